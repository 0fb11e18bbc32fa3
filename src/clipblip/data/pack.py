"""Any readable dataset -> webdataset tar shards, resumable (`clipblip data pack SOURCE --out DIR`).

Interrupt it and run the same command again: complete shards are kept, the rest is written (shards.py says how
completeness is told). Rejected items (unreadable images, bad lines, images without a caption) are listed in
the rejects file, `DIR/rejects.jsonl` unless --rejects says otherwise; any reject makes the exit code 3.
"""

from __future__ import annotations

from pathlib import Path

from .readers import open_dataset
from .rejects import Rejects
from .shards import complete_shards, read_manifest, write_shards


def pack(source: str, out, *, format: str | None = None, image_root=None, split: str | None = None,
         columns: tuple[str, str] | None = None, shard_size: int = 1000, rejects_path=None) -> tuple[dict, list]:
    """Write `source` as shards in `out` (resuming a killed run); returns the summary and the first rejected
    items [(item, reason)] (all of them are in the rejects file, `out/rejects.jsonl` by default)."""
    out = Path(out)
    rejects_path = Path(rejects_path) if rejects_path else out / "rejects.jsonl"
    before = read_manifest(out)
    kept = len(complete_shards(out, before))  # what write_shards will keep, before it writes
    # A resumed job's rejects file already lists the index's rejects and those of its complete shards.
    resuming = before is not None and before.get("rejects_file") == str(rejects_path.absolute())
    meta = {"source": str(Path(source).absolute()) if "{" not in source else source,
            "format": format, "split": split, "columns": list(columns) if columns else None}
    with Rejects(rejects_path, append=resuming) as rejects:
        dataset = open_dataset(source, format=format, image_root=image_root, split=split, columns=columns,
                               rejects=None if resuming else rejects)
        shards = write_shards(dataset, out, shard_size=shard_size, rejects=rejects, meta=meta)
        samples = sum(s["samples"] for s in read_manifest(out)["shards"])
        result = {"out": str(out), "shards": [str(s) for s in shards], "written": len(shards) - kept,
                  "skipped_complete": kept, "samples": samples, "rejected": len(rejects),
                  "rejects_file": str(rejects_path)}
        return result, rejects
