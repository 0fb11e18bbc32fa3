"""webdataset tar shards: write any records as shards (resumable), read them back split across ranks.

A sample is `<key>.<jpg|png|webp>` (the original image bytes, by their real format; other formats re-encoded
to PNG) + `<key>.json` (every other field of the record: id, caption, captions, question, answers...). Keys
are the running sample number, `000000042`: webdataset splits a key at its first dot, so ids that may hold
dots live in the JSON, not in the key.

Completeness. A shard is written as `<name>.tar.tmp` and renamed to `<name>.tar` once closed and synced, so a
`.tar` is never half-written. `manifest.json` (replaced atomically after each shard) lists the finished shards
with their sample count, size in bytes and `inputs_end`: how many input records the job had consumed when the
shard closed. A shard counts as complete only while it is listed there and its file has the listed size; a
re-run keeps the longest complete prefix, skips that many inputs without decoding them, deletes leftover
`.tmp` files, and writes the rest. Shards are filled to `shard_size` good samples (rejects do not leave holes),
and their bytes are deterministic (fixed mtime), so a resumed job writes what an uninterrupted one would.

Reading is bounded: shards are plain (uncompressed) tars, read as a stream; a member over `files.item_limit()`
($CLIPBLIP_MAX_ITEM_MB, 64 MB by default) is skipped unread and its sample listed as rejected, and a compressed
shard is listed and skipped, so a small file can never unpack into a large member in memory.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import tarfile
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import ClipBlipError
from ..extras import require
from ..files import atomic_write, commit, item_limit, read_item, temp_name
from ..image import load_image
from .rejects import Rejects

MANIFEST = "manifest.json"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
_MAGIC = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"))
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_META = re.compile(r"__[^/]*__($|/)")


# ------------------------------------------------------------------------------------------------------ write


def _webdataset():
    # webdataset writes the tars and expands brace patterns (the train extra); reading shards is ours alone
    return require("webdataset", "train", "writing webdataset shards (or naming them by a brace pattern)")


def write_shards(records, out_dir, *, shard_size: int = 1000, prefix: str = "shard", rejects: Rejects | None = None,
                 progress: bool = True, meta: dict | None = None) -> list[Path]:
    """Write `records` (dicts with "image": a path, bytes or PIL image) as tar shards; return every shard's path.

    Bad images go to `rejects` and are skipped. Re-running with the same arguments resumes (see the module
    docstring); `meta` (e.g. the source) is kept in the manifest and must match on resume, as must shard_size
    and prefix. When `rejects` logs to the file the manifest names, a resume also drops the lines the killed
    run logged for its unfinished shard, so nothing is listed twice.
    """
    if shard_size < 1:
        raise ClipBlipError(f"shard_size must be at least 1, got {shard_size}")
    _webdataset()  # before the work, not at the first full shard
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejects = rejects if rejects is not None else Rejects()
    manifest = _resume_state(out, shard_size, prefix, meta, rejects)
    done = manifest["shards"]
    if manifest["complete"]:
        return [out / s["name"] for s in done]
    for stale in out.glob(f".{prefix}-*.tar.*.tmp"):
        stale.unlink()
    consumed = done[-1]["inputs_end"] if done else 0
    samples, mark, shard = sum(s["samples"] for s in done), len(rejects), None
    try:
        total = len(records)
    except TypeError:  # a generator, or shards without a manifest
        total = None
    bar = tqdm(total=total, initial=consumed, desc="packing", unit="item", disable=not progress)
    try:
        for pos, record in enumerate(itertools.islice(iter(records), consumed, None), consumed):
            bar.update()
            sample = encode_sample(record, rejects)
            if sample is None:
                continue
            shard = shard or _OpenShard(out, prefix, len(done))
            shard.write({"__key__": f"{samples:09d}", **sample})
            samples += 1
            if shard.count == shard_size:
                done.append(shard.finish(pos + 1, len(rejects) - mark, rejects.offset()))
                shard, mark = None, len(rejects)
                _save_manifest(out, manifest)
                bar.set_postfix(shards=len(done), rejected=len(rejects))
        if shard is not None:
            done.append(shard.finish(pos + 1, len(rejects) - mark, rejects.offset()))
            shard = None
        manifest["complete"] = True
        _save_manifest(out, manifest)
    finally:
        bar.close()
        if shard is not None:  # interrupted: what is left of the open shard is not a shard
            shard.abort()
    return [out / s["name"] for s in done]


def encode_sample(record: dict, rejects: Rejects) -> dict | None:
    """{"<ext>": image bytes, "json": every other field} after a full decode of the image; None if rejected."""
    rid, image = record.get("id"), record.get("image")
    try:
        data = _image_bytes(image)
        decoded = load_image(image if data is None else data)  # the validation: a full decode
    except ClipBlipError as e:
        rejects.add(rid, str(e), image=image)
        return None
    ext = image_format(data) if data is not None else None
    if ext is None:  # BMP, GIF, TIFF, a PIL image...: one lossless format the readers know
        buf = io.BytesIO()
        decoded.save(buf, format="PNG")
        data, ext = buf.getvalue(), "png"
    try:
        fields = json.dumps({k: v for k, v in record.items() if k != "image"}, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        rejects.add(rid, f"a field cannot be stored as JSON ({e})", image=image)
        return None
    return {ext: data, "json": fields.encode("utf-8")}


def _image_bytes(image) -> bytes | None:
    """The stored bytes of a path (a regular file within the cap on one item, read once: what is decoded is what
    is stored) or bytes image; None for a PIL image (it has none)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return read_item(image, "image")
    return None


def image_format(data: bytes) -> str | None:
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return "webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


class _OpenShard:
    """One shard being written: a .tmp file until `finish` syncs it and renames it into place."""

    def __init__(self, out: Path, prefix: str, index: int):
        self.name = f"{prefix}-{index:06d}.tar"
        self.path = out / self.name
        self.tmp = temp_name(self.path)
        self.file = open(self.tmp, "wb")
        # mtime fixed: the same inputs give the same bytes, so a resumed job matches an uninterrupted one
        self.tar = _webdataset().TarWriter(self.file, encoder=False, mtime=0, mode=0o644)
        self.count = 0

    def write(self, sample: dict) -> None:
        self.tar.write(sample)
        self.count += 1

    def finish(self, inputs_end: int, rejected: int, rejects_offset: int) -> dict:
        self.tar.close()
        self.file.close()
        commit(self.tmp, self.path)
        return {"name": self.name, "samples": self.count, "bytes": self.path.stat().st_size,
                "inputs_end": inputs_end, "rejected": rejected, "rejects_offset": rejects_offset}

    def abort(self) -> None:
        try:
            self.tar.close()  # else the tarfile's finalizer writes its end blocks to a closed file
        finally:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def read_manifest(out_dir) -> dict | None:
    """The manifest of a shard directory, or None when there is none."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ClipBlipError(f"{path} is unreadable ({e}); delete it and the shards to pack again") from None


def complete_shards(out_dir, manifest: dict | None) -> list[dict]:
    """The manifest's entries for the longest run of shards, from the first, whose files have the listed size."""
    kept = []
    for s in manifest["shards"] if manifest is not None else []:
        f = Path(out_dir) / s["name"]
        if not f.is_file() or f.stat().st_size != s["bytes"]:
            break  # a later shard was written after this one, so it cannot be trusted either
        kept.append(s)
    return kept


def _save_manifest(out: Path, manifest: dict) -> None:
    with atomic_write(out / MANIFEST) as f:  # readers see the old manifest or the new one, never half of one
        json.dump(manifest, f, indent=1)


def _resume_state(out: Path, shard_size: int, prefix: str, meta, rejects: Rejects) -> dict:
    """The manifest to continue from: a fresh one, or the old one cut to its complete shards."""
    log = str(rejects.path.absolute()) if rejects.path is not None else None
    old = read_manifest(out)
    if old is None:
        if any(out.glob(f"{prefix}-*.tar")):
            raise ClipBlipError(f"{out} holds {prefix}-*.tar shards but no {MANIFEST}, so they cannot be resumed "
                                "safely; write to an empty directory, or delete them")
        return {"version": 1, "prefix": prefix, "shard_size": shard_size, "meta": meta, "complete": False,
                "rejects_file": log, "rejects_start": rejects.offset(), "shards": []}
    theirs = (old.get("prefix"), old.get("shard_size"), old.get("meta"))
    if theirs != (prefix, shard_size, meta):
        raise ClipBlipError(f"{out} holds shards of another job (prefix {theirs[0]!r}, shard size {theirs[1]}, "
                            f"{theirs[2]}); re-run it with the same options, or write to a new directory")
    kept = complete_shards(out, old)
    complete = old["complete"] and len(kept) == len(old["shards"])
    if not complete and log is not None and log == old.get("rejects_file"):
        rejects.truncate(kept[-1]["rejects_offset"] if kept else old["rejects_start"])
    return {**old, "shards": kept, "complete": complete, "rejects_file": log or old.get("rejects_file")}


# ------------------------------------------------------------------------------------------------------- read


def list_shards(source) -> tuple[list[str], list[int] | None]:
    """The shard files of a directory (its manifest's, else every .tar, sorted), one .tar, or a brace pattern
    ("shards/shard-{000000..000009}.tar"), with their sample counts when a manifest gives them."""
    s = os.fspath(source)
    path = Path(s)
    if path.is_dir():
        manifest = read_manifest(path)
        if manifest is not None:
            listed = manifest["shards"]
            names, counts = [str(path / m["name"]) for m in listed], [m["samples"] for m in listed]
        else:
            names, counts = sorted(str(p) for p in path.glob("*.tar")), None
    else:
        names, counts = _webdataset().shardlists.expand_urls(s), None
    missing = [n for n in names if not Path(n).is_file()]
    if missing or not names:
        raise ClipBlipError(f"{s}: no shards there" if not names else
                            f"{len(missing)} shard(s) of {s} are missing, e.g. {missing[0]}")
    return names, counts


class ShardDataset(torch.utils.data.IterableDataset):
    """Records from webdataset shards, in shard order (no shuffle; shuffle downstream if you want it).

    An iterable, not map-style: a tar is read front to back. Ranks read disjoint shards (shard i goes to rank
    i % world_size), and DataLoader workers split their rank's shards the same way; ranks can get different
    sample counts (10 shards, 4 ranks: 3, 3, 2, 2 shards), so bound a distributed epoch by steps.
    start: skip this rank's first `start` samples (resume); whole shards are skipped without reading them when
    a manifest gives their counts; needs num_workers <= 1. len(): this rank's samples left, when known.
    `rejects` counts the samples skipped while iterating (no image, unreadable JSON, a member over the cap on
    one item, a corrupt or compressed tar), in this process: DataLoader workers count in their own copies. A
    record's image is always its sample's own image member; an "image" field in its .json is dropped.
    """

    def __init__(self, source, *, rank: int = 0, world_size: int = 1, start: int = 0, rejects: Rejects | None = None):
        if world_size < 1 or not 0 <= rank < world_size or start < 0:
            raise ClipBlipError(f"need 0 <= rank < world_size and start >= 0; got rank {rank}, world_size "
                                f"{world_size}, start {start}")
        names, counts = list_shards(source)
        if len(names) < world_size:
            raise ClipBlipError(f"{source} has {len(names)} shard(s) for {world_size} ranks: every rank needs its "
                                "own; pack with a smaller --shard-size to get more shards, or use fewer ranks")
        self.source, self.shards, self.start = os.fspath(source), names[rank::world_size], start
        self.counts = counts[rank::world_size] if counts is not None else None
        self.rejects = rejects if rejects is not None else Rejects()

    def __len__(self) -> int:
        if self.counts is None:
            raise TypeError(f"{self.source}: the sample count is unknown without a {MANIFEST}")
        return max(0, sum(self.counts) - self.start)

    def __iter__(self):
        shards, skip = self.shards, self.start
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1:
            if skip:
                raise ClipBlipError("start= (resume) needs num_workers <= 1: with several workers the order in "
                                    "which their samples arrive is not a fixed stream")
            shards = shards[worker.id::worker.num_workers]
        elif self.counts is not None:
            for count in self.counts:
                if skip < count or not shards:
                    break
                shards, skip = shards[1:], skip - count
        records = (r for shard in shards for r in map(self._record, self._samples(shard)) if r is not None)
        yield from itertools.islice(records, skip, None)

    def _samples(self, shard: str):
        """{"__key__", "__url__", "<ext>": bytes, ...} per run of members with one key, as webdataset groups them;
        "__refused__" says why a sample cannot be used (a member over the cap, a name given twice)."""
        sample = None
        for key, ext, data in _members(shard, self.rejects):
            if sample is None or key != sample["__key__"]:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": shard}
            if data is None:
                sample["__refused__"] = f"its .{ext} is over the cap of {item_limit()} bytes on one member"
            elif ext in sample:
                sample["__refused__"] = f"two .{ext} members"  # which one to believe? neither
            else:
                sample[ext] = data
        if sample is not None:
            yield sample

    def _record(self, sample: dict) -> dict | None:
        key, where = sample["__key__"], f"{Path(sample['__url__']).name}:{sample['__key__']}"
        ext = next((k for k in IMAGE_KEYS if k in sample), None)
        fields, reason = {}, sample.get("__refused__")
        if reason is None and "json" in sample:
            try:
                fields = json.loads(sample["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                reason = f"unreadable .json ({e})"
        if isinstance(fields, dict) and "txt" in sample and not {"caption", "question"} & fields.keys():
            fields["caption"] = sample["txt"].decode("utf-8", "replace").strip()
        if reason is None and not isinstance(fields, dict):
            reason = "its .json is not an object"
        elif reason is None and ext is None:
            reason = f"no image ({', '.join(IMAGE_KEYS)}) in the sample"
        elif reason is None and not {"caption", "captions", "question"} & fields.keys():
            reason = "no caption: neither a .txt nor a caption or question in its .json"
        if reason is not None:
            self.rejects.add(where, reason, image=where)
            return None
        rid = str(fields.pop("id", key))
        fields.pop("image", None)  # the image is the sample's own member: metadata never names a file to read
        return {**fields, "id": rid, "image": sample[ext]}


def _members(shard: str, rejects: Rejects):
    """(key, ext, bytes) for each regular member of a plain tar, in order; bytes None for a member over
    `item_limit()`, whose data is skipped unread. A compressed or unreadable shard is listed in `rejects`.

    Our own reader, not webdataset's: that one reads every member whole, and opens gzip, bzip2 and xz
    transparently, so a 400 KB shard could hold a 400 MB member. Uncompressed, no member is larger than the
    file, and its size is known from its header before a byte of it is read.
    """
    name, limit, head = Path(shard).name, item_limit(), b""
    try:
        with open(shard, "rb") as f:
            head = f.read(6)
            f.seek(0)
            with tarfile.open(fileobj=f, mode="r|") as tar:
                for member in tar:
                    key, ext = _key_ext(member.name) if member.isreg() else (None, None)
                    if key is not None:
                        yield key, ext, (tar.extractfile(member).read() if member.size <= limit else None)
                    tar.members = []  # a stream of millions of members: keep none of their headers
    except (OSError, tarfile.TarError) as e:
        kind = next((k for magic, k in _COMPRESSED if head.startswith(magic)), None)
        rejects.add(name, f"unreadable shard data: {e}" if kind is None else
                    f"a {kind}-compressed shard; only plain tar shards are read (their members can be bounded): "
                    "decompress it, or pack the data again with `clipblip data pack`", image=shard)


def _key_ext(name: str) -> tuple[str | None, str | None]:
    """webdataset's split of a member name: the key runs to the first dot of the file name, the rest
    (lowercased) is the field. Names without a dot, "__...__" metadata files and "__" fields (the reader's own
    "__key__", "__url__", "__refused__") are no field of a sample."""
    m = _KEY_EXT.match(name)
    if m is None or _META.match(name) or m.group(2).startswith("__"):
        return None, None
    return m.group(1), m.group(2).lower()
