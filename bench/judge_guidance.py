"""Does CLIP guidance make images that match their prompts? An independent judge (BLIP) decides.

    PYTHONPATH=src .venv/bin/python bench/judge_guidance.py [--n 24] [--start blank|scene] [--out runs/guidance]

Prompts come from the Shapes caption grammar (shapes_text's NP / Clause / Caption), drawn with a seeded RNG from
the colour-shape pairs of the train split (the held-out pairs of data/shapes.py are never used): mostly
relations ("a red star above a blue circle."), some single objects ("a large orange circle."). For each prompt,
`guide` steers a start image with the guiding CLIP (default: the embedded shapes-clip). The start is a blank
canvas (the Shapes world's darkest background) or, with --start scene, a random val scene to be edited.

The judge is the BLIP model (default: the embedded shapes-blip), which took no part in the guidance:
- ITM: the match probability of (image, prompt), start against result;
- caption: BLIP's caption of the image, read back with the Shapes parser; the share of the prompt's facts
  (each object's existence, with the attributes the prompt gives; the relation, either way round) that the
  caption states.
The judge prefers the result when its value is strictly higher than the start's. Outputs under --out:
results.json (every prompt, every number), sheet.png (start, result, prompt, captions), summary.md.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import clipblip
from clipblip.data.shapes import BACKGROUNDS, COLORS, SHAPES, SIZES, ShapesWorld
from clipblip.data.shapes_text import NP, OPPOSITE, REL_WORDS, Caption, Clause, parse
from clipblip.tasks.caption import caption
from clipblip.tasks.guidance import guide
from clipblip.tasks.itm import match
from clipblip.tasks.score import clipscore
from common import machine


def prompts(n: int, seed: int, world: ShapesWorld) -> list[Caption]:
    """n prompts: 3 in 4 a relation between two different train-split colour-shape pairs, else one object."""
    rng = random.Random(f"judge-guidance/{seed}")
    pairs = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in world.heldout_pairs]
    out = []
    for i in range(n):
        if i % 4 == 3:
            c, s = rng.choice(pairs)
            out.append(Caption((Clause(NP((rng.choice(SIZES), c, s))),)))
            continue
        (c1, s1), (c2, s2) = rng.sample(pairs, 2)
        rel = rng.choice(list(OPPOSITE))
        out.append(Caption((Clause(NP((None, c1, s1)), rel, NP((None, c2, s2)), False,
                                   rng.randrange(len(REL_WORDS[rel]))),)))
    return out


def _fits(said: tuple, wanted: tuple) -> bool:
    """Does a stated description (size, colour, shape) give every attribute the wanted one gives?"""
    return all(w is None or s == w for s, w in zip(said, wanted))


def stated(fact: tuple, said: list[tuple]) -> bool:
    """Is a prompt fact among the caption's facts (a relation counts either way round: A above B = B below A)?"""
    if fact[0] in ("exists", "count"):
        return any(f[0] == "exists" and _fits(f[1], fact[1]) or f[0] == "count" and f[2] >= 1 and _fits(f[1], fact[1])
                   for f in said)
    _, d1, rel, d2 = fact
    return any(f[0] == "rel" and ((f[2] == rel and _fits(f[1], d1) and _fits(f[3], d2)) or
                                  (f[2] == OPPOSITE[rel] and _fits(f[1], d2) and _fits(f[3], d1))) for f in said)


def facts_stated(prompt: Caption, text: str) -> list[bool]:
    """Per fact of the prompt (objects, then the relation), whether the caption states it."""
    said = parse(text)
    return [stated(f, said) for f in prompt.facts()]


def start_image(kind: str, world: ShapesWorld, i: int) -> Image.Image:
    if kind == "blank":
        return Image.new("RGB", (world.image_size, world.image_size), BACKGROUNDS[0])
    return world.sample("val", i, captions_only=True)["image"]


def judge(blip, images: list[Image.Image], prompt: str) -> list[dict]:
    probs = match(blip, images, [prompt])[:, 0].tolist()
    caps = caption(blip, images, num_beams=3, max_new_tokens=30)
    return [{"itm": p, "caption": c} for p, c in zip(probs, caps)]


def contact_sheet(rows: list[dict], images: list[tuple[Image.Image, Image.Image]], path: Path, cell: int = 128):
    """One row per prompt: start, result (nearest-neighbour upscaled), then the prompt and what BLIP said."""
    width, pad = 2 * cell + 560, 6
    sheet = Image.new("RGB", (width, len(rows) * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (row, (start, result)) in enumerate(zip(rows, images)):
        y = pad + k * (cell + pad)
        sheet.paste(start.resize((cell, cell), Image.Resampling.NEAREST), (pad, y))
        sheet.paste(result.resize((cell, cell), Image.Resampling.NEAREST), (2 * pad + cell, y))
        s, r = row["start"], row["result"]
        lines = [f"{k + 1}. {row['prompt']}",
                 f"start:  ITM {s['itm']:.2f}  facts {s['facts']:.2f}  {s['caption'][:70]}",
                 f"result: ITM {r['itm']:.2f}  facts {r['facts']:.2f}  {r['caption'][:70]}",
                 f"        {r['caption'][70:140]}",
                 f"CLIPScore {row['clipscore_start']:.2f} -> {row['clipscore']:.2f}"]
        for j, line in enumerate(lines):
            draw.text((3 * pad + 2 * cell, y + 4 + 16 * j), line, fill="black")
    sheet.save(path)


def weights_id(source: str) -> str:
    """The first 12 hex digits of the sha256 of an embedded model's weights (which judge this was), else the
    source as given."""
    import hashlib

    from clipblip import catalog

    folder = catalog.embedded(source)
    if folder is None:
        return source
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", choices=["blank", "scene"], default="blank")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--param", default="pyramid")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--clip", default="shapes-clip", help="the guiding model")
    ap.add_argument("--blip", default="shapes-blip", help="the judge")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/guidance")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip, blip = (clipblip.load(s, device="cpu", precision="fp32") for s in (args.clip, args.blip))
    world = ShapesWorld(args.seed)
    rows, images, t0 = [], [], time.time()
    for i, p in enumerate(prompts(args.n, args.seed, world)):
        text = p.text()
        start = start_image(args.start, world, i)
        result = guide(clip, text, steps=args.steps, size=args.size, init=start, param=args.param, lr=args.lr,
                       seed=args.seed + i)
        verdicts = judge(blip, [start, result], text)
        for v in verdicts:
            v["stated"] = facts_stated(p, v["caption"])
            v["facts"] = sum(v["stated"]) / len(v["stated"])
        rows.append({"prompt": text, "start": verdicts[0], "result": verdicts[1],
                     "clipscore_start": clipscore(clip, start, text), "clipscore": clipscore(clip, result, text)})
        images.append((start, result))
        result.save(out / f"{i:02d}_result.png")
        print(f"{i + 1:>3}/{args.n} {text:<48} ITM {verdicts[0]['itm']:.2f}->{verdicts[1]['itm']:.2f}  facts "
              f"{verdicts[0]['facts']:.2f}->{verdicts[1]['facts']:.2f}  {verdicts[1]['caption']}", flush=True)
    n = len(rows)
    rate = {
        "itm": sum(r["result"]["itm"] > r["start"]["itm"] for r in rows) / n,
        "caption_facts": sum(r["result"]["facts"] > r["start"]["facts"] for r in rows) / n,
        "caption_facts_tied": sum(r["result"]["facts"] == r["start"]["facts"] for r in rows) / n,
        "both": sum(r["result"]["itm"] > r["start"]["itm"] and r["result"]["facts"] > r["start"]["facts"]
                    for r in rows) / n,
        "clipscore": sum(r["clipscore"] > r["clipscore_start"] for r in rows) / n,
    }
    relations = [r for r in rows if len(r["result"]["stated"]) == 3]  # exists, exists, rel
    rate["relation_stated"] = sum(r["result"]["stated"][2] for r in relations) / max(1, len(relations))
    means = {f"{side}_{k}": sum(r[side][k] for r in rows) / n for side in ("start", "result") for k in ("itm", "facts")}
    summary = {"settings": vars(args), "judge_weights_sha256": weights_id(args.blip), "n": n,
               "judge_prefers_result": rate, "means": means,
               "seconds": round(time.time() - t0, 1), "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    (out / "results.json").write_text(json.dumps({**summary, "rows": rows}, indent=1))
    contact_sheet(rows, images, out / "sheet.png")
    text = (f"# CLIP guidance judged by BLIP ({args.start} start)\n\n{n} prompts, {args.clip} guiding, {args.blip} "
            f"judging, {args.steps} steps, {args.param}, {summary['seconds']} s on {summary['machine']}\n\n"
            f"| judge | prefers the result | mean start | mean result |\n|---|---|---|---|\n"
            f"| ITM match probability | {rate['itm']:.0%} | {means['start_itm']:.3f} | {means['result_itm']:.3f} |\n"
            f"| caption: share of prompt facts stated | {rate['caption_facts']:.0%} "
            f"(tied {rate['caption_facts_tied']:.0%}) | {means['start_facts']:.3f} | {means['result_facts']:.3f} |\n"
            f"| both | {rate['both']:.0%} | | |\n\n"
            f"The result's caption states the prompt's relation (either way round) for "
            f"{rate['relation_stated']:.0%} of the {len(relations)} relation prompts.\n")
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
