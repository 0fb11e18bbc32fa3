"""What goes into an index: the items of a folder, a dataset file or shards, a text file, or a folder of embeddings
(`clipblip embed --format npy|parquet`), each with a stable key and the hash of its content (what decides whether
it must be embedded again)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.embeddings import read_manifest, read_shards, sidecar_caption, skipped_of
from ..data.readers import infer_format, open_dataset
from ..errors import ClipBlipError
from ..files import item_limit, read_bounded
from ..jobs import Skipped, find_images


@dataclass
class Item:
    key: str  # identity across builds: the absolute image path, "record:<id>" for shard images, "text:<hash>"
    path: str | None  # an image file (None for texts and images inside shards)
    caption: str | None
    meta: dict = field(default_factory=dict)
    data: bytes | None = None  # image bytes from shards
    text: str | None = None  # set for text items (embedded with the text tower)
    vector: np.ndarray | None = None  # float32 [dim], made by an earlier `clipblip embed`: not embedded again

    def content(self) -> bytes:
        """The bytes the hash is taken over (a given vector's own: its image may not be on this machine). Raises
        OSError for an unreadable file, and for one that is not a regular file or is over the cap on one item
        (`files.read_bounded`): a dataset may name any path."""
        if self.vector is not None:
            return self.vector.tobytes()
        if self.text is not None:
            return self.text.encode()
        return self.data if self.data is not None else read_bounded(self.path, item_limit())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_items(source, *, format: str | None = None, image_root=None, skipped: Skipped) -> list[Item]:
    """A plain folder: its images (recursively), a sidecar .txt giving the caption when there is one. Anything
    else goes to the dataset readers (CSV, JSONL, COCO/VQA JSON, a folder of image + .txt pairs, shards)."""
    path = Path(source)
    if not path.exists() and "{" not in str(source):  # shard patterns (a-{000..009}.tar) are not paths
        raise ClipBlipError(f"{source}: no such file or directory")
    if path.is_dir() and format is None and infer_format(path) == "folder":
        found = [Item(str(p.absolute()), str(p.absolute()), sidecar_caption(p)) for p in find_images(path)]
        return _storable(found, skipped)
    ds = open_dataset(source, format=format, image_root=image_root)
    items, seen = [], set()
    for rec in ds:
        item = _from_record(rec)
        if item.key not in seen:  # several records of one image (VQA questions): index the image once
            seen.add(item.key)
            items.append(item)
    skipped.items += ds.rejects.items
    return _storable(items, skipped)


def _storable(items: list[Item], skipped: Skipped) -> list[Item]:
    """The items whose name and caption are text the index can store; the others are skipped, with why. A file
    name that is not valid UTF-8 reaches Python as a string with lone surrogates (so does a JSON "\\udcff"),
    which SQLite refuses."""
    keep = []
    for it in items:
        try:
            for text in (it.key, it.path, it.caption):
                if text is not None:
                    text.encode("utf-8")
        except UnicodeEncodeError:
            skipped.add(it.key.encode("utf-8", "backslashreplace").decode(),
                        "its name or caption is not valid UTF-8 text, which the index stores: rename the file "
                        "(or fix the caption)")
            continue
        keep.append(it)
    return keep


def text_items(path) -> list[Item]:
    """One item per non-empty line of a text file."""
    try:
        lines = [t.strip() for t in Path(path).read_text(encoding="utf-8").splitlines() if t.strip()]
    except OSError as e:
        raise ClipBlipError(f"cannot read {path}: {e.strerror}") from None
    return [Item(f"text:{digest(t.encode())}", None, t, {"kind": "text"}, text=t) for t in dict.fromkeys(lines)]


def embedded_items(folder, skipped: Skipped) -> tuple[dict, list[Item]]:
    """The manifest of an embeddings folder and its vectors as items, keyed as a folder build keys them (an image
    by its absolute path, a text by its hash); what the embedding run skipped goes to `skipped`."""
    manifest, items, seen = read_manifest(folder), [], set()
    for kind, vectors, records in read_shards(folder):
        for r, v in zip(records, vectors):
            if kind == "image":
                item = Item(r["path"], r["path"], r["caption"], {"kind": "image"}, vector=v)
            else:
                item = Item(f"text:{digest(r['text'].encode())}", None, r["text"], {"kind": "text"}, text=r["text"],
                            vector=v)
            if item.key not in seen:  # an image or text given twice is one item, as in a folder build
                seen.add(item.key)
                items.append(item)
    for item, why in skipped_of(folder):
        skipped.add(item, f"not in the embeddings ({why})")
    return manifest, items


def _from_record(rec: dict) -> Item:
    image = rec.get("image")
    meta = {k: v for k, v in rec.items() if k not in ("image", "caption") and _jsonable(v)}
    meta["record"] = meta.pop("id", None)
    if isinstance(image, (bytes, bytearray)):
        return Item(f"record:{rec.get('id')}", None, rec.get("caption"), meta, data=bytes(image))
    return Item(str(image), str(image), rec.get("caption"), meta)


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
