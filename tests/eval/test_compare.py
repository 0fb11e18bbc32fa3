"""`clipblip compare` on a small Shapes split: the shipped CLIP is far above chance where the report says CLIP is
strong and at chance where it says CLIP is blind (attribute swaps); every section of the report is there."""

import json

import pytest

import clipblip
import clipblip.cli
from clipblip import catalog
from clipblip.eval import benchmark


@pytest.fixture(scope="module")
def clip_results():
    if catalog.embedded("shapes-clip") is None:
        pytest.fail("the embedded shapes-clip is missing from the package")
    results, _ = benchmark.run(clipblip.load("shapes-clip"), n=40, progress=False)
    return results


def test_shipped_clip_quality(clip_results):
    zs = clip_results["zero_shot"]["clip"]
    assert zs["color"] >= 0.9 and zs["shape"] >= 0.8 and zs["count"] >= 0.5  # chance: 1/8, 1/6, 1/4
    assert clip_results["retrieval"]["clip"]["t2i"]["r5"] >= 0.8  # chance: 5/40
    probe = clip_results["compositional"]["clip"]["per_type"]
    assert probe["color_change"] >= 0.85  # a changed colour is a changed word: CLIP sees it
    assert probe["attribute_swap"] <= 0.7  # the same words in another order: CLIP barely does better than chance
    assert clip_results["heldout"]["clip"]["t2i_r1"] >= 0.3
    assert clip_results["cost"]["clip"]["params"] > 1e6 and clip_results["cost"]["clip"]["encode_image"]["median"] > 0
    met = {t["name"]: t["met"] for t in clip_results["targets"]}
    assert met["CLIP zero-shot colour"] is not None and met["caption facts true"] is None  # no BLIP: not measured


def test_blip_sections_run(tmp_path, tiny_shapes_blip):
    results, extras = benchmark.run(None, tiny_shapes_blip, tiny_shapes_blip, n=4, progress=False)
    for section, path in (("zero_shot", "blip_itc"), ("retrieval", "blip_itm"), ("compositional", "blip_itm"),
                          ("heldout", "blip_itm"), ("captioning", "blip"), ("vqa", "blip"), ("cost", "blip")):
        assert path in results[section], section
    cap = results["captioning"]["blip"]
    assert 0 <= cap["bleu4"] <= 1 and 0 <= cap["facts_true"] <= 1 and cap["n"] == 4
    assert len(extras["captioning"]) == 4 and results["vqa"]["blip"]["rank"]["n"] > 0
    assert 0 <= results["compositional"]["blip_itm"]["all"] <= 1


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "report"
    code = clipblip.cli.main(["compare", "--n", "12", "--blip", "none", "--blip-vqa", "none", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["zero_shot"]["clip"]["color"] > 0.5
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "Zero-shot" in md and "data:image/png;base64," in html
    assert list((out / "examples").glob("*.png"))


@pytest.fixture(scope="module")
def tiny_shapes_blip():
    from clipblip.train import resolve
    from clipblip.train.loop import build_model

    overrides = ["model.vision.width=32", "model.vision.layers=1", "model.vision.heads=2",
                 "model.vision.mlp_dim=64", "model.embed_dim=16", "model.text.width=32", "model.text.layers=1",
                 "model.text.heads=2", "model.text.mlp_dim=64", "model.text.cross_width=32", "init_vision=null"]
    return build_model(resolve("shapes-blip", overrides=overrides)).eval()


def test_shipped_blip_quality():
    """A regression test of the embedded BLIP: far above chance where it has learned (see its card)."""
    results, _ = benchmark.run(None, clipblip.load("shapes-blip"), None, n=40, progress=False)
    zs = results["zero_shot"]["blip_itc"]
    assert zs["color"] >= 0.9 and zs["shape"] >= 0.7  # chance: 1/8, 1/6
    assert results["retrieval"]["blip_itc"]["t2i"]["r5"] >= 0.6  # chance: 5/40
    assert results["compositional"]["blip_itc"]["per_type"]["color_change"] >= 0.8  # chance: 1/2
    cap = results["captioning"]["blip"]
    assert cap["bleu4"] >= 0.4 and cap["facts_true"] >= 0.75 and cap["objects_mentioned"] >= 0.7
    assert results["retrieval"]["blip_itm"]["t2i"]["r1"] >= 0.5  # chance: 1/40


def test_shipped_vqa_quality():
    """The embedded VQA model answers most Shapes questions (92% at n=200, see the README); chance is far lower."""
    results, _ = benchmark.run(None, None, clipblip.load("shapes-blip-vqa"), n=40, progress=False)
    vqa = results["vqa"]["blip"]["generate"]
    assert vqa["overall"] >= 0.75 and vqa["per_type"]["color"] >= 0.8 and vqa["per_type"]["exists"] >= 0.8


def test_compare_reads_a_dataset_with_one_caption_per_record(tmp_path):
    import json

    from PIL import Image

    rows = []
    for i, color in enumerate(["red", "blue", "green", "white"]):
        Image.new("RGB", (64, 64), color).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": f"a {color} square"})
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    assert clipblip.cli.main(["compare", "--data", str(tmp_path / "data.jsonl"), "--n", "4", "--out", str(out),
                              "--json"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["retrieval"]["clip"]["t2i"]["r1"] >= 0 and "captioning" in results


def _has_key(d, key) -> bool:
    return isinstance(d, dict) and (key in d or any(_has_key(v, key) for v in d.values()))


def test_every_rate_sits_in_its_interval_and_no_item_reaches_results(clip_results):
    r = clip_results
    pairs = [(r["zero_shot"]["clip"][k], r["zero_shot"]["clip"]["ci"][k]) for k in ("shape", "color", "count")]
    pairs += [(r["retrieval"]["clip"][w][k], r["retrieval"]["clip"]["ci"][w][k]) for w in ("t2i", "i2t")
              for k in ("r1", "r5", "r10")]
    pairs += [(r["compositional"]["clip"]["all"], r["compositional"]["clip"]["ci"]["all"]),
              (r["heldout"]["clip"]["t2i_r1"], r["heldout"]["clip"]["ci"]["t2i_r1"])]
    pairs += [(t["value"], t["ci"]) for t in r["targets"] if t["name"].startswith("CLIP zero-shot")]
    for value, (lo, hi) in pairs:
        assert lo <= value <= hi and hi - lo < 0.5
    assert not _has_key(r, "items")  # per-item outcomes stay out of results.json
    json.dumps(r)
