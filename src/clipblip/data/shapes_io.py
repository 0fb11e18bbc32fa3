"""`clipblip data shapes`: write a range of one split of the Shapes world as PNG files plus one JSONL.

Layout: DIR/images/<id>.png and DIR/<split>.jsonl (DIR/<split>_n<k>.jsonl with --objects k), one line per image:
{"id", "image": "images/<id>.png" (relative to the JSONL), "caption", "captions", "labels", "vqa", "negatives",
"noise", "scene"}. The JSONL is written to a temp file and moved into place, so an interrupted run never leaves a
half-written one; a PNG already on disk with the same bytes is left alone, so a rerun (after an interruption,
or to extend the range) only writes what changed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

from ..errors import ClipBlipError

DESCRIPTION = """Write images and captions of the generated Shapes world (seeded: the same arguments give the same
files; --start lets several runs write disjoint index ranges of a split).
Make webdataset shards from the result with: clipblip data pack DIR/<split>.jsonl --out SHARDS"""


def add_args(p: argparse.ArgumentParser) -> None:
    from .shapes import SPLITS

    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--out", required=True, help="output directory (DIR)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--seed", type=int, default=0, help="world seed (also picks the heldout colour-shape pairs)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--captions", type=int, default=5, help="captions per image")
    p.add_argument("--noise", type=float, default=0.3, help="web split: share of noisy captions")
    p.add_argument("--start", type=int, default=0, help="first sample index")
    p.add_argument("--objects", type=int,
                   help="objects per image, e.g. 1 for a clean classification set (writes DIR/<split>_n<k>.jsonl)")
    p.add_argument("--shards", type=int, metavar="SIZE",
                   help="write webdataset shards of SIZE samples into DIR instead of PNGs + JSONL")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _write_png(image, path: Path) -> bool:
    """Write unless the file already holds these bytes; True if written."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def _record(sample: dict, image_path: str) -> dict:
    keys = ("caption", "captions", "labels", "vqa", "negatives", "noise", "scene")
    return {"id": sample["id"], "image": image_path, **{k: sample[k] for k in keys}}


def run(args) -> int:
    from tqdm import tqdm

    from .shapes import ShapesWorld

    if args.n < 1:
        raise ClipBlipError(f"--n must be at least 1 (got {args.n})")
    if args.start < 0:
        raise ClipBlipError(f"--start must be >= 0 (got {args.start})")
    world = ShapesWorld(seed=args.seed, image_size=args.size, captions_per_image=args.captions, noise=args.noise)
    out = Path(args.out)
    if args.shards:
        return _write_shards(args, world, out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    name = f"{args.split}_n{args.objects}.jsonl" if args.objects else f"{args.split}.jsonl"
    jsonl, tmp = out / name, out / (name + ".tmp")
    written = 0
    try:
        with open(tmp, "w") as f:
            for index in tqdm(range(args.start, args.start + args.n), desc=f"shapes {args.split}", unit="img",
                              disable=args.json):
                sample = world.sample(args.split, index, args.objects)
                rel = f"images/{sample['id']}.png"
                written += _write_png(sample["image"], out / rel)
                f.write(json.dumps(_record(sample, rel)) + "\n")
        os.replace(tmp, jsonl)
    finally:  # interrupted: drop the partial temp file, keep any earlier complete JSONL
        tmp.unlink(missing_ok=True)
    result = {"jsonl": str(jsonl), "images": args.n, "written": written, "unchanged": args.n - written,
              "split": args.split, "seed": args.seed, "heldout_pairs": sorted(map(list, world.heldout_pairs))}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {jsonl} ({args.n} images, {written} new or changed PNGs under {out / 'images'})")
    return 0


def _write_shards(args, world, out: Path) -> int:
    """The same records as the JSONL, images inside the tars (resumable: see shards.write_shards)."""
    from .shards import write_shards

    samples = (world.sample(args.split, i, args.objects) for i in range(args.start, args.start + args.n))
    records = ({**_record(s, None), "image": s["image"]} for s in samples)
    meta = {"shapes": {k: getattr(args, k) for k in ("split", "seed", "size", "captions", "noise", "start", "n",
                                                      "objects")}}
    paths = write_shards(records, out, shard_size=args.shards, prefix=args.split, progress=not args.json, meta=meta)
    result = {"shards": [str(p) for p in paths], "images": args.n, "split": args.split, "seed": args.seed}
    print(json.dumps(result, indent=2) if args.json else f"wrote {len(paths)} shard(s) of {args.split} to {out}")
    return 0
