"""`make demo` (python -m clipblip.demo [OUT], default runs/demo), in three parts:

1. The embedded models trained on the Shapes world doing real work on test scenes they never saw (saved under
   OUT/scenes): shapes-blip captions them, shapes-blip-vqa answers their questions, shapes-clip classifies them
   zero-shot (count; shape and colour on single-object scenes) and finds each among them from a true caption.
   Each result is printed next to the scene's truth with a ✓ or ✗, then a tally (`trained`).
2. `clipblip compare` with the same models: CLIP vs BLIP on the same test splits (OUT/compare/report.html).
3. A format check with random weights (`format_check`): a CLIP written in the Hugging Face CLIPModel layout is
   loaded, converted to the native format and back, and run on drawn images (OUT/images); a BLIP with every head
   is written, loaded and run. Its outputs mean nothing; what it checks is the conversions.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import clipblip
from clipblip.config import BertConfig, BlipConfig, ClipConfig, TextConfig, VisionConfig
from clipblip.data import shapes_eval as se
from clipblip.data.shapes import score_caption
from clipblip.export import export_hf
from clipblip.image import Preprocess
from clipblip.models import BLIP, CLIP

SHAPES = {"circle": "ellipse", "square": "rectangle"}
COLORS = ["red", "green", "blue", "yellow"]


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _objects(rec: dict) -> str:
    return ", ".join(f"{o['size']} {o['color']} {o['shape']}" for o in rec["scene"]["objects"])


def _check(task: str, name: str, output: str, truth: str, ok: bool) -> dict:
    return {"task": task, "scene": name, "output": output, "truth": truth, "ok": bool(ok)}


def _save(recs: list[dict], folder: Path, stem: str) -> list[Path]:
    paths = [folder / f"{stem}-{i}.png" for i in range(len(recs))]
    for rec, path in zip(recs, paths):
        rec["image"].save(path)
    return paths


def _captions(blip, recs: list[dict], paths: list[Path]) -> list[dict]:
    """shapes-blip's captions, read back with the world's parser: ✓ when it states facts and all are true."""
    print("   captions (shapes-blip, beam 3), right when every fact the caption states is true of the scene:")
    checks = []
    for path, rec, text in zip(paths, recs, clipblip.caption(blip, paths, num_beams=3)):
        facts = score_caption(rec["scene"], text)
        ok = facts["parsed"] and facts["true"] == facts["facts"]
        checks.append(_check("caption", path.stem, text, _objects(rec), ok))
        print(f"   {_mark(ok)} {path.stem}: {text!r} ({facts['true']}/{facts['facts']} facts true)\n"
              f"     truth: {_objects(rec)}")
    return checks


def _vqa(vqa, recs: list[dict], paths: list[Path], per_scene: int = 2) -> list[dict]:
    """shapes-blip-vqa's generated answers to each scene's questions (types taken in turn) against the truth."""
    asked = [(path, rec["vqa"][(per_scene * i + j) % len(rec["vqa"])])
             for i, (path, rec) in enumerate(zip(paths, recs)) for j in range(per_scene)]
    answers = clipblip.answer(vqa, [p for p, _ in asked], [q["question"] for _, q in asked])
    print("   questions (shapes-blip-vqa, generated answers):")
    checks = []
    for (path, q), got in zip(asked, answers):
        checks.append({**_check("vqa", path.stem, got, q["answer"], got == q["answer"]), "question": q["question"]})
        print(f"   {_mark(got == q['answer'])} {path.stem}: {q['question']} {got} (truth: {q['answer']})")
    return checks


def _classify(clip, paths: list[Path], labels: list[str], templates) -> list[str]:
    return [top[0][0] for top in clipblip.classify(clip, paths, labels, templates=templates, top_k=1)]


def _zero_shot(clip, recs, paths, single, single_paths) -> list[dict]:
    """shapes-clip zero-shot with the compare's prompts: the count of each scene; shape and colour of a single
    object."""
    print("   zero-shot (shapes-clip, the prompt ensembles of clipblip compare):")
    checks = []
    for path, rec, got in zip(paths, recs, _classify(clip, paths, list(se.COUNT_PROMPTS), ("{}",))):
        truth = se.COUNT_PROMPTS[rec["labels"]["count"] - 1]
        checks.append(_check("count", path.stem, got, truth, got == truth))
        print(f"   {_mark(got == truth)} {path.stem}: {got!r} (truth: {rec['labels']['count']} objects)")
    shapes = _classify(clip, single_paths, list(se.SHAPES), se.SHAPE_TEMPLATES)
    colors = _classify(clip, single_paths, [se.article(c) for c in se.COLORS], se.COLOR_TEMPLATES)
    for path, rec, shape, color in zip(single_paths, single, shapes, colors):
        labels, color = rec["labels"], color.split()[-1]  # "an orange" -> "orange"
        checks += [_check("shape", path.stem, shape, labels["shape"], shape == labels["shape"]),
                   _check("color", path.stem, color, labels["color"], color == labels["color"])]
        print(f"   {_mark(checks[-2]['ok'])} {_mark(checks[-1]['ok'])} {path.stem}: shape {shape}, colour {color} "
              f"(truth: {_objects(rec)})")
    return checks


def _search(clip, recs: list[dict], paths: list[Path]) -> list[dict]:
    """Text-to-image search with shapes-clip over the saved scenes: each scene's longest true caption as the
    query; ✓ when the top hit is that scene."""
    print(f"   search (shapes-clip) over the {len(paths)} scenes, each found from its longest true caption:")
    queries = [max(rec["captions"], key=len) for rec in recs]
    hits = clipblip.text_to_image(clip, queries, clipblip.image_features(clip, paths), top_k=1)
    checks = []
    for path, query, top in zip(paths, queries, hits):
        found = paths[top[0][0]].stem
        checks.append(_check("search", path.stem, found, path.stem, found == path.stem))
        print(f"   {_mark(found == path.stem)} {query!r} -> {found} (truth: {path.stem})")
    return checks


def trained(out: Path, n: int = 5, seed: int = 0) -> dict:
    """Part 1: the embedded Shapes models on n test scenes and n single-object ones, rendered to out/scenes.
    Returns {"checks": [{"task", "scene", "output", "truth", "ok"} (and "question" for vqa)], "right": int,
    "total": int,
    "scenes": [paths of the scenes], "single": [paths of the single-object scenes]}."""
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    recs, single = se.records("test", n, seed), se.records("test", n, seed, n_objects=1)
    paths, single_paths = _save(recs, out / "scenes", "scene"), _save(single, out / "scenes", "single")
    print(f"1. The embedded models trained on the Shapes world, on test scenes they never saw "
          f"({out / 'scenes'}), each result next to the scene's truth:")
    clip, blip, vqa = (clipblip.load(name) for name in ("shapes-clip", "shapes-blip", "shapes-blip-vqa"))
    checks = (_captions(blip, recs, paths) + _vqa(vqa, recs, paths)
              + _zero_shot(clip, recs, paths, single, single_paths) + _search(clip, recs, paths))
    right = sum(c["ok"] for c in checks)
    tasks = dict.fromkeys(c["task"] for c in checks)
    per_task = ", ".join(f"{t} {sum(c['ok'] for c in checks if c['task'] == t)}/"
                         f"{sum(c['task'] == t for c in checks)}" for t in tasks)
    print(f"   {right}/{len(checks)} right ({per_task})")
    return {"checks": checks, "right": right, "total": len(checks), "scenes": paths, "single": single_paths}


def _draw_images(folder: Path) -> list[Path]:
    paths = []
    for shape, method in SHAPES.items():
        for color in COLORS:
            img = Image.new("RGB", (96, 96), "white")
            getattr(ImageDraw.Draw(img), method)((24, 24, 72, 72), fill=color)
            paths.append(folder / f"{color}_{shape}.png")
            img.save(paths[-1])
    return paths


def format_check(out: Path) -> None:
    """Part 3: random weights through the checkpoint formats and the applications (out/clip-random-hf,
    out/clip-random, out/blip-random, out/images: the README's examples use them)."""
    print("3. Format check with random weights (their outputs mean nothing; what it checks is the conversions):")
    cfg = ClipConfig(vision=VisionConfig(image_size=64, patch_size=16, width=128, layers=4, heads=4, mlp_dim=512,
                                         output_dim=64),
                     text=TextConfig(width=128, heads=4, layers=4, mlp_dim=512, output_dim=64),
                     image=Preprocess(size=64), embed_dim=64)
    (out / "images").mkdir(parents=True, exist_ok=True)
    export_hf(CLIP(cfg).eval(), out / "clip-random-hf")
    model = clipblip.load(out / "clip-random-hf", precision="fp32")  # fp32: the conversion is shown lossless
    clipblip.save(model, out / "clip-random")
    again = clipblip.load(out / "clip-random", precision="fp32")
    if not all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items()):
        raise SystemExit(f"format check failed: {out / 'clip-random'} does not hold the weights it was saved with")
    print(f"   a CLIP in the Hugging Face layout ({out / 'clip-random-hf'}) loaded, saved in the native format "
          f"({out / 'clip-random'}) and loaded again: weights identical")
    paths = _draw_images(out / "images")
    start = time.perf_counter()
    labels = clipblip.classify(again, paths, [f"{c} {s}" for c in COLORS for s in SHAPES], top_k=2)
    hits = clipblip.text_to_image(again, ["a green square"], clipblip.image_features(again, paths), top_k=3)
    print(f"   zero-shot ({len(labels)} images) and search ({len(hits[0])} hits) over the drawn images "
          f"({out / 'images'}) in {time.perf_counter() - start:.2f}s")
    _blip_part(out, paths)


def _blip_part(out: Path, paths: list[Path]) -> None:
    """A random BLIP with every head (pretraining layout), through the same steps: caption, VQA, ITM."""
    cfg = BlipConfig(vision=VisionConfig(image_size=64, patch_size=16, width=128, layers=4, heads=4, mlp_dim=512,
                                         act="gelu", norm_eps=1e-6, norm_pre=False, patch_bias=True,
                                         output_dim=None),
                     text=BertConfig(width=128, heads=4, layers=4, mlp_dim=512, cross_width=128),
                     image=Preprocess(size=64, resize="squash"), embed_dim=64)
    clipblip.save(BLIP(cfg).eval(), out / "blip-random")
    blip = clipblip.load(out / "blip-random")
    start = time.perf_counter()
    captions = clipblip.caption(blip, paths[:2], num_beams=3, max_new_tokens=8)
    answers = clipblip.answer(blip, paths[:1], ["what color?"], candidates=COLORS)
    match = clipblip.match(blip, paths[:1], ["a red circle", "a cat"])
    print(f"   a BLIP with every head written and loaded ({out / 'blip-random'}): {len(captions)} captions, "
          f"{len(answers[0])} ranked answers, ITM {list(match.shape)} in {time.perf_counter() - start:.2f}s")


def hint(scene: Path) -> str:
    """The command to try next on a saved scene (the caption part 1 printed for it), with the console script beside
    this interpreter where there is one (.venv/bin/clipblip under `make demo`)."""
    script = Path(sys.executable).parent / "clipblip"
    if not script.exists():
        script = Path("clipblip")
    elif script.is_relative_to(Path.cwd()):
        script = script.relative_to(Path.cwd())
    return shlex.join([str(script), "caption", str(scene), "--beams", "3", "-m", "shapes-blip"])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    out = Path(argv[0] if argv else "runs/demo")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    shown = trained(out)
    print("2. clipblip compare with the same models (CLIP vs BLIP on the same test splits):")
    from clipblip.cli import main as cli

    # fp32: the comparison of record gives the same figures on every machine ("auto" is bf16 on some; what that
    # changes is the README's accuracy-per-precision table)
    code = cli(["compare", "--n", "200", "--precision", "fp32", "--out", str(out / "compare")])
    if code != 0:
        raise SystemExit(code)
    format_check(out)
    print(f"Try a trained model on a scene: {hint(shown['scenes'][0])}")


if __name__ == "__main__":
    main()
