"""`clipblip data shapes` (generate the Shapes world) and `clipblip data pack` (any dataset -> webdataset shards).

pack is resumable: interrupt it and run the same command again; complete shards are kept, the rest is written
(data/shards.py says how completeness is told). Rejected items (unreadable images, bad lines, images without a
caption) are listed in the rejects file, `DIR/rejects.jsonl` unless --rejects says otherwise; any reject makes
the exit code 3.
"""

from __future__ import annotations

import argparse
import json

from .common import report

DESCRIPTION = """Write images and captions of the generated Shapes world (seeded: the same arguments give the same
files; --start lets several runs write disjoint index ranges of a split).
Make webdataset shards from the result with: clipblip data pack DIR/<split>.jsonl --out SHARDS"""


def _shapes_args(p: argparse.ArgumentParser) -> None:
    from ..data.shapes import SPLITS

    p.description = DESCRIPTION  # shown as written: the formatter keeps descriptions' lines
    p.add_argument("--out", required=True, help="output directory (DIR)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--split", default="train", choices=SPLITS, help="test_heldout: scenes with the colour-shape "
                   "pairs no other split shows; web: noisy captions (see --noise)")
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


def cmd_shapes(args) -> int:
    from ..data.shapes_io import write_split

    settings = {k: getattr(args, k) for k in ("split", "seed", "size", "captions", "noise", "start", "objects",
                                              "shards")}
    result = write_split(args.out, args.n, progress=not args.json, **settings)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.shards:
        print(f"wrote {len(result['shards'])} shard(s) of {args.split} to {args.out}")
    else:
        print(f"wrote {result['jsonl']} ({args.n} images, {result['written']} new or changed PNGs under "
              f"{args.out}/images)")
    return 0


def _pack_args(p: argparse.ArgumentParser) -> None:
    from ..data.readers import FORMATS

    p.add_argument("source", help="a CSV/TSV, JSONL, COCO or VQA .json, an image folder with .txt captions, or shards")
    p.add_argument("--out", required=True, help="the directory to write the shards and manifest.json to")
    p.add_argument("--format", choices=FORMATS, help="the source's format (default: from its name and layout)")
    p.add_argument("--image-root", help="where relative image paths start (default: the source file's folder)")
    p.add_argument("--split", help="train, val or test of COCO's Karpathy dataset_coco.json")
    p.add_argument("--columns", nargs=2, metavar=("IMAGE", "CAPTION"), help="the CSV columns to read")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: 1000)")
    p.add_argument("--rejects", help="the JSON-lines file listing rejected items (default: OUT/rejects.jsonl)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cmd_pack(args) -> int:
    from ..data.pack import pack

    result, rejects = pack(args.source, args.out, format=args.format, image_root=args.image_root, split=args.split,
                           columns=tuple(args.columns) if args.columns else None, shard_size=args.shard_size,
                           rejects_path=args.rejects)
    lines = [f"{args.out}: {result['written']} shard(s) written, {result['skipped_complete']} already complete "
             f"(skipped); {result['samples']} samples in {len(result['shards'])} shard(s)"]
    if len(rejects):
        lines.append(f"{len(rejects)} item(s) rejected, all listed in {result['rejects_file']}")
    return report(result, rejects, args.json, lines)


def add_parsers(sub) -> None:
    data = sub.add_parser("data", help="generate the Shapes world, pack datasets into webdataset shards")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("shapes", help="write a split of the generated Shapes world (images + JSONL)")
    _shapes_args(p)
    p.set_defaults(run=cmd_shapes)
    p = dsub.add_parser("pack", help="write any readable dataset as webdataset tar shards")
    _pack_args(p)
    p.set_defaults(run=cmd_pack)
