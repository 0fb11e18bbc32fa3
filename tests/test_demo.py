"""`make demo`'s parts: the trained Shapes models on a few test scenes, each result beside the truth it is judged on
(the truth checked against the scenes' records here), and the random-weight format check's files."""

import re

import pytest
from PIL import Image, ImageChops

from clipblip import demo
from clipblip.data import shapes_eval as se
from clipblip.data.shapes import score_caption


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    import contextlib
    import io

    out, printed = tmp_path_factory.mktemp("demo"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = demo.trained(out, n=3)
    return out, result, printed.getvalue()


def test_scenes_are_the_test_records(shown):
    out, result, _ = shown
    for name, recs in (("scene", se.records("test", 3, 0)), ("single", se.records("test", 3, 0, n_objects=1))):
        paths = result["scenes" if name == "scene" else "single"]
        assert paths == [out / "scenes" / f"{name}-{i}.png" for i in range(3)]
        for path, rec in zip(paths, recs):
            assert ImageChops.difference(Image.open(path).convert("RGB"), rec["image"]).getbbox() is None


def test_each_result_is_judged_on_the_scenes_truth(shown):
    _, result, _ = shown
    recs, single = se.records("test", 3, 0), se.records("test", 3, 0, n_objects=1)
    checks = result["checks"]
    assert {c["task"] for c in checks} == {"caption", "vqa", "count", "shape", "color", "search"}
    for c in checks:
        i = int(c["scene"].rsplit("-", 1)[1])
        rec = (single if c["scene"].startswith("single") else recs)[i]
        if c["task"] == "caption":
            facts = score_caption(rec["scene"], c["output"])
            assert c["ok"] == (facts["facts"] > 0 and facts["true"] == facts["facts"])
            continue
        truth = {"count": se.COUNT_PROMPTS[rec["labels"]["count"] - 1], "search": c["scene"],
                 "shape": rec["labels"]["shape"], "color": rec["labels"]["color"],
                 "vqa": c["truth"]}[c["task"]]  # vqa's question and answer: the test below
        assert c["truth"] == truth and c["ok"] == (c["output"] == truth)
    assert sum(c["task"] == "vqa" for c in checks) == 6 and sum(c["task"] == "search" for c in checks) == 3
    assert result["right"] > result["total"] / 2  # trained models: far above chance on every task here


def test_the_outputs_are_the_models_on_the_scenes(shown):
    """The same outputs from the records' images (not the saved files), and zero-shot as `clipblip compare`
    scores it (its own code path: class embeddings, argmax)."""
    import clipblip

    _, result, _ = shown
    recs, single = se.records("test", 3, 0), se.records("test", 3, 0, n_objects=1)
    by_task = {t: [c for c in result["checks"] if c["task"] == t] for t in ("caption", "vqa", "count", "shape",
                                                                            "color")}
    blip, vqa = clipblip.load("shapes-blip"), clipblip.load("shapes-blip-vqa")
    assert [c["output"] for c in by_task["caption"]] == clipblip.caption(blip, [r["image"] for r in recs],
                                                                         num_beams=3)
    asked = [(recs[int(c["scene"][-1])], c) for c in by_task["vqa"]]
    assert all({"question": c["question"], "answer": c["truth"]} in [{k: q[k] for k in ("question", "answer")}
                                                                      for q in r["vqa"]] for r, c in asked)
    assert [c["output"] for c in by_task["vqa"]] == clipblip.answer(vqa, [r["image"] for r, _ in asked],
                                                                    [c["question"] for c in by_task["vqa"]])
    rates = se.zero_shot(clipblip.load("shapes-clip"), single, recs)
    for task in ("count", "shape", "color"):
        assert sum(c["ok"] for c in by_task[task]) / 3 == pytest.approx(rates[task])


def test_the_printout_shows_each_verdict_and_a_true_tally(shown):
    _, result, printed = shown
    assert printed.count("✓") == result["right"] and printed.count("✗") == result["total"] - result["right"]
    assert re.search(rf"^   {result['right']}/{result['total']} right \(caption \d/3, vqa \d/6, ", printed, re.M)
    for c in result["checks"]:
        if c["task"] == "vqa":
            assert f"{c['output']} (truth: {c['truth']})" in printed


def test_format_check_writes_what_the_readme_uses(tmp_path, capsys):
    demo.format_check(tmp_path)
    for model in ("clip-random", "clip-random-hf", "blip-random"):
        assert (tmp_path / model / "config.json").is_file()
    assert {"red_circle.png", "blue_square.png"} <= {p.name for p in (tmp_path / "images").glob("*.png")}
    assert "weights identical" in capsys.readouterr().out


def test_the_closing_hint_runs_as_printed(shown):
    """The command the demo ends with captions scene-0 as part 1 did."""
    import shlex
    import subprocess

    _, result, _ = shown
    command = demo.hint(result["scenes"][0])
    done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{result['scenes'][0]}: {result['checks'][0]['output']}"
