"""Write a range of one split of the Shapes world as PNG files plus one JSONL.

Layout: DIR/images/<id>.png and DIR/<split>.jsonl (DIR/<split>_n<k>.jsonl with --objects k), one line per image:
{"id", "image": "images/<id>.png" (relative to the JSONL), "caption", "captions", "labels", "vqa", "negatives",
"noise", "scene"}; beside each PNG, DIR/images/<id>.txt holds its captions, one a line, the caption first, so the
images folder alone is a dataset and an index source with captions. The JSONL is written to a temp file and moved
into place, so an interrupted run never leaves a half-written one; a PNG or caption file already on disk with the
same bytes is left alone, so a rerun (after an interruption, or to extend the range) only writes what changed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ..errors import ClipBlipError
from ..files import atomic_write, write_atomic


def _write_png(image, path: Path) -> bool:
    """Write unless the file already holds these bytes; True if written."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return _write_changed(buf.getvalue(), path)


def _write_changed(data: bytes, path: Path) -> bool:
    """Write unless the file already holds these bytes; True if written."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, data)
    return True


def _record(sample: dict, image_path: str) -> dict:
    keys = ("caption", "captions", "labels", "vqa", "negatives", "noise", "scene")
    return {"id": sample["id"], "image": image_path, **{k: sample[k] for k in keys}}


def write_split(out, n: int, *, split: str = "train", seed: int = 0, size: int = 64, captions: int = 5,
                noise: float = 0.3, start: int = 0, objects: int | None = None, shards: int | None = None,
                progress: bool = True) -> dict:
    """Write images `start .. start + n` of a split (PNGs + JSONL, or with `shards` webdataset shards of that
    many samples); returns what was written."""
    from tqdm import tqdm

    from .shapes import ShapesWorld

    if n < 1:
        raise ClipBlipError(f"--n must be at least 1 (got {n})")
    if start < 0:
        raise ClipBlipError(f"--start must be >= 0 (got {start})")
    world = ShapesWorld(seed=seed, image_size=size, captions_per_image=captions, noise=noise)
    out = Path(out)
    if shards:
        settings = {"split": split, "seed": seed, "size": size, "captions": captions, "noise": noise,
                    "start": start, "n": n, "objects": objects}
        return _write_shards(world, out, settings, shards, progress)
    (out / "images").mkdir(parents=True, exist_ok=True)
    name = f"{split}_n{objects}.jsonl" if objects else f"{split}.jsonl"
    jsonl = out / name
    written = 0
    with atomic_write(jsonl) as f:  # interrupted: any earlier complete JSONL is kept
        for index in tqdm(range(start, start + n), desc=f"shapes {split}", unit="img", disable=not progress):
            sample = world.sample(split, index, objects)
            rel = f"images/{sample['id']}.png"
            written += _write_png(sample["image"], out / rel)
            _write_changed("".join(c + "\n" for c in sample["captions"]).encode(), (out / rel).with_suffix(".txt"))
            f.write(json.dumps(_record(sample, rel)) + "\n")
    return {"jsonl": str(jsonl), "images": n, "written": written, "unchanged": n - written, "split": split,
            "seed": seed, "heldout_pairs": sorted(map(list, world.heldout_pairs))}


def _write_shards(world, out: Path, settings: dict, shard_size: int, progress: bool) -> dict:
    """The same records as the JSONL, images inside the tars (resumable: see shards.write_shards)."""
    from .shards import write_shards

    split, first, n = settings["split"], settings["start"], settings["n"]
    samples = (world.sample(split, i, settings["objects"]) for i in range(first, first + n))
    records = ({**_record(s, None), "image": s["image"]} for s in samples)
    paths = write_shards(records, out, shard_size=shard_size, prefix=split, progress=progress,
                         meta={"shapes": settings})
    return {"shards": [str(p) for p in paths], "images": n, "split": split, "seed": settings["seed"]}
