"""CLIPScore, RefCLIPScore and reranking, each against the same numbers computed by hand from the embeddings."""

import json

import numpy as np
import pytest
import torch

import clipblip
from clipblip import ClipBlipError
from clipblip.cli import EXIT_ERROR, EXIT_PARTIAL, main
from clipblip.tasks.score import read_pairs, score_pairs

TEXTS = ["a red square", "a green circle", "blue", "yellow star", "white", "black night"]


def _images(folder):
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png") and p.name != "broken.jpg")


def _raw(model, images, texts):
    """Unnormalized embeddings as numpy, straight from the towers."""
    with torch.no_grad():
        img = model.encode_image(model.preprocess(images)).numpy().astype(np.float64)
        txt = model.encode_text(model.tokenize(texts)).numpy().astype(np.float64)
    return img, txt


def _cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_clipscore_is_w_times_clipped_cosine(tiny_clip, image_folder):
    images = _images(image_folder)
    img, txt = _raw(tiny_clip, images, TEXTS)
    cos = _cos(img, txt)
    assert (cos < 0).any() and (cos > 0).any()  # the clipping at 0 is exercised
    for w in (2.5, 1.0):
        got = clipblip.clipscore(tiny_clip, images, TEXTS, w=w).numpy()
        np.testing.assert_allclose(got, w * np.maximum(cos, 0), atol=1e-5)
    one = clipblip.clipscore(tiny_clip, images[0], TEXTS[0])
    assert isinstance(one, float) and one == pytest.approx(2.5 * max(cos[0], 0), abs=1e-5)


def test_refclipscore_is_harmonic_mean_with_best_reference(tiny_clip, image_folder):
    images = _images(image_folder)[:3]
    texts = TEXTS[:3]
    refs = [["a red box", "red", "a blue star"], ["green"], ["a blue sky", "blue water"]]
    img, txt = _raw(tiny_clip, images, texts)
    clip_part = 2.5 * np.maximum(_cos(img, txt), 0)
    expected = []
    for i, r in enumerate(refs):
        _, ref_emb = _raw(tiny_clip, images[:1], r)
        ref_part = max(_cos(txt[i][None], ref_emb).max(), 0)
        total = clip_part[i] + ref_part
        expected.append(0.0 if total == 0 else 2 * clip_part[i] * ref_part / total)
    got = clipblip.refclipscore(tiny_clip, images, texts, refs).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert clipblip.refclipscore(tiny_clip, images[0], texts[0], refs[0]) == pytest.approx(expected[0], abs=1e-5)
    with pytest.raises(ClipBlipError, match="references"):
        clipblip.refclipscore(tiny_clip, images, texts, [["x"], [], ["y"]])


def test_clipscore_counts_must_match(tiny_clip, image_folder):
    with pytest.raises(ClipBlipError, match="pairs"):
        clipblip.clipscore(tiny_clip, _images(image_folder)[:2], TEXTS[:3])


def test_set_from_jsonl_skips_bad_rows_and_images(tiny_clip, image_folder, tmp_path):
    images = _images(image_folder)[:3]
    lines = [json.dumps({"image": str(images[0]), "prompt": TEXTS[0], "references": ["red", "a box"]}),
             json.dumps({"image": str(images[1]), "caption": TEXTS[1]}),
             "{not json",
             json.dumps({"image": str(image_folder / "broken.jpg"), "text": "x"}),
             json.dumps({"image": str(images[2])}),  # no prompt
             json.dumps({"image": str(images[2]), "text": TEXTS[2]})]
    (tmp_path / "set.jsonl").write_text("\n".join(lines))
    pairs, skipped = read_pairs(tmp_path / "set.jsonl")
    assert len(pairs) == 4 and len(skipped) == 2
    result = score_pairs(tiny_clip, pairs, skipped=skipped)
    assert result["n"] == 3 and len(skipped) == 3 and "broken.jpg" in skipped.items[-1][0]
    per = [it["clipscore"] for it in result["items"]]
    expected = clipblip.clipscore(tiny_clip, [images[0], images[1], images[2]], [TEXTS[0], TEXTS[1], TEXTS[2]])
    np.testing.assert_allclose(per, expected.numpy(), atol=1e-6)
    assert result["clipscore"] == pytest.approx(np.mean(per))
    ref = clipblip.refclipscore(tiny_clip, images[0], TEXTS[0], ["red", "a box"])
    assert result["items"][0]["refclipscore"] == pytest.approx(ref, abs=1e-6)
    assert result["refclipscore"] == pytest.approx(ref, abs=1e-6) and "refclipscore" not in result["items"][1]


def test_set_from_csv_and_folder(tiny_clip, image_folder, tmp_path):
    images = _images(image_folder)[:2]
    (tmp_path / "set.csv").write_text(f"image,prompt,references\n{images[0]},{TEXTS[0]},red|a box\n"
                                      f"{images[1].name},{TEXTS[1]},\n")
    pairs, skipped = read_pairs(tmp_path / "set.csv")
    assert [p.references for p in pairs] == [["red", "a box"], []] and not skipped
    assert pairs[1].image == str(tmp_path / images[1].name)  # relative to the file's folder
    folder = tmp_path / "gen"
    folder.mkdir()
    for i, p in enumerate(images):
        (folder / p.name).write_bytes(p.read_bytes())
        if i == 0:
            (folder / p.name).with_suffix(".txt").write_text(f"{TEXTS[0]}\nred\n")
    pairs, skipped = read_pairs(folder)
    assert [(p.text, p.references) for p in pairs] == [(TEXTS[0], ["red"])] and len(skipped) == 1


def test_rerank_by_clip_sorts_by_hand_cosine(tiny_clip, image_folder):
    images = _images(image_folder)
    img, txt = _raw(tiny_clip, images, ["a red square"])
    cos = _cos(img, txt)
    ranked = clipblip.rerank(tiny_clip, "a red square", images)
    assert [i for i, _ in ranked] == list(np.argsort(-cos))
    np.testing.assert_allclose([s for _, s in ranked], np.sort(cos)[::-1], atol=1e-5)
    assert len(clipblip.rerank(tiny_clip, "a red square", images, top_k=2)) == 2


def test_rerank_by_itm_sorts_by_match_probability(tiny_blip, image_folder):
    images = _images(image_folder)
    probs = clipblip.match(tiny_blip, images, ["a red square"])[:, 0].numpy()
    ranked = clipblip.rerank(tiny_blip, "a red square", images, by="itm")
    assert [i for i, _ in ranked] == list(np.argsort(-probs, kind="stable"))
    np.testing.assert_allclose([s for _, s in ranked], np.sort(probs)[::-1], atol=1e-5)


def test_rerank_itm_needs_blip(tiny_clip, image_folder):
    with pytest.raises(ClipBlipError, match="BLIP"):
        clipblip.rerank(tiny_clip, "x", _images(image_folder), by="itm")


# ---- CLI ---------------------------------------------------------------------------------------------------------


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_score_one_pair(tiny_clip, tiny_clip_dir, image_folder, capsys):
    image = _images(image_folder)[0]
    code, out, _ = run(capsys, "score", image, TEXTS[0], "--refs", "red", "-m", tiny_clip_dir, "--json")
    assert code == 0
    item = json.loads(out)["items"][0]
    assert item["clipscore"] == pytest.approx(clipblip.clipscore(tiny_clip, image, TEXTS[0]), abs=1e-6)
    assert item["refclipscore"] == pytest.approx(clipblip.refclipscore(tiny_clip, image, TEXTS[0], ["red"]), abs=1e-6)
    code, _, err = run(capsys, "score", image_folder / "broken.jpg", "x", "-m", tiny_clip_dir)
    assert code == EXIT_ERROR and "broken.jpg" in err and "Traceback" not in err
    assert run(capsys, "score", image, "-m", tiny_clip_dir)[0] == EXIT_ERROR  # no prompt


def test_cli_score_set_writes_items_and_reports_skips(tiny_clip_dir, image_folder, tmp_path, capsys):
    images = _images(image_folder)[:2]
    rows = [{"image": str(images[0]), "prompt": "a"}, {"image": str(images[1]), "prompt": "b"},
            {"image": str(image_folder / "broken.jpg"), "prompt": "c"}]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    code, out, err = run(capsys, "score", "--set", tmp_path / "s.jsonl", "--out", tmp_path / "o.json",
                         "-m", tiny_clip_dir)
    assert code == EXIT_PARTIAL and "broken.jpg" in err and "CLIPScore" in out
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved["n"] == 2 and len(saved["skipped"]) == 1
    assert saved["clipscore"] == pytest.approx(np.mean([it["clipscore"] for it in saved["items"]]))
    code, _, err = run(capsys, "score", images[0], "a", "--set", tmp_path / "s.jsonl", "-m", tiny_clip_dir)
    assert code == EXIT_ERROR and "not both" in err


def test_cli_rerank(tiny_clip, tiny_clip_dir, image_folder, capsys):
    code, out, err = run(capsys, "rerank", "a red square", image_folder, "--top", "3", "-m", tiny_clip_dir,
                         "--json")
    assert code == EXIT_PARTIAL and "broken.jpg" in err
    rows = json.loads(out)["results"]
    best = clipblip.rerank(tiny_clip, "a red square", _images(image_folder), top_k=3)
    assert [r["image"] for r in rows] == [str(_images(image_folder)[i]) for i, _ in best]
    code, _, err = run(capsys, "rerank", "x", image_folder / "0_red.jpg", "--by", "itm", "-m", tiny_clip_dir)
    assert code == EXIT_ERROR and "BLIP" in err
