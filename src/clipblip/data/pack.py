"""`clipblip data pack SOURCE --out DIR`: any readable dataset -> webdataset tar shards, resumable.

Interrupt it and run the same command again: complete shards are kept, the rest is written (shards.py says how
completeness is told). Rejected items (unreadable images, bad lines, images without a caption) are listed in
the rejects file, `DIR/rejects.jsonl` unless --rejects says otherwise; any reject makes the exit code 3.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .readers import FORMATS, open_dataset
from .rejects import Rejects
from .shards import complete_shards, read_manifest, write_shards


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a CSV/TSV, JSONL, COCO or VQA .json, an image folder with .txt captions, or shards")
    p.add_argument("--out", required=True, help="the directory to write the shards and manifest.json to")
    p.add_argument("--format", choices=FORMATS, help="the source's format (default: from its name and layout)")
    p.add_argument("--image-root", help="where relative image paths start (default: the source file's folder)")
    p.add_argument("--split", help="train, val or test of COCO's Karpathy dataset_coco.json")
    p.add_argument("--columns", nargs=2, metavar=("IMAGE", "CAPTION"), help="the CSV columns to read")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default: 1000)")
    p.add_argument("--rejects", help="the JSON-lines file listing rejected items (default: OUT/rejects.jsonl)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args) -> int:
    from ..cli import _report

    out = Path(args.out)
    rejects_path = Path(args.rejects) if args.rejects else out / "rejects.jsonl"
    before = read_manifest(out)
    kept = len(complete_shards(out, before))  # what write_shards will keep, before it writes
    # A resumed job's rejects file already lists the index's rejects and those of its complete shards.
    resuming = before is not None and before.get("rejects_file") == str(rejects_path.absolute())
    meta = {"source": str(Path(args.source).absolute()) if "{" not in args.source else args.source,
            "format": args.format, "split": args.split, "columns": args.columns}
    with Rejects(rejects_path, append=resuming) as rejects:
        dataset = open_dataset(args.source, format=args.format, image_root=args.image_root, split=args.split,
                               columns=tuple(args.columns) if args.columns else None,
                               rejects=None if resuming else rejects)
        shards = write_shards(dataset, out, shard_size=args.shard_size, rejects=rejects, meta=meta)
        samples = sum(s["samples"] for s in read_manifest(out)["shards"])
        written = len(shards) - kept
        result = {"out": str(out), "shards": [str(s) for s in shards], "written": written,
                  "skipped_complete": kept, "samples": samples, "rejected": len(rejects),
                  "rejects_file": str(rejects_path)}
        lines = [f"{out}: {written} shard(s) written, {kept} already complete (skipped); "
                 f"{samples} samples in {len(shards)} shard(s)"]
        if rejects:
            lines.append(f"{len(rejects)} item(s) rejected, all listed in {rejects_path}")
        return _report(result, rejects, args.json, lines)

