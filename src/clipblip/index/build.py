"""Build, update and delete: embed what is new or changed (by content hash), in batches that survive a kill,
then commit the index and its metadata in one atomic step (store.Writer.commit).

Resume: each batch's embeddings are committed to the `pending` table as soon as they are made (bad images
too, with their reason), so a run killed at any moment leaves the last committed index as it was, and the same
command run again embeds only what no earlier run did. The batches of a resumed run are the ones the first
run would have made (the work list is the same, minus whole batches), so it ends with the vectors an
uninterrupted run makes.

A folder of embeddings (`clipblip embed --format npy|parquet`, data/embeddings.py) goes the same way with its
vectors staged as they are: nothing is embedded, and the index's model is the one the folder names.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..catalog import DEFAULT
from ..data.embeddings import is_embeddings, model_name
from ..errors import ClipBlipError
from ..image import load_image
from ..jobs import Skipped, ordered_map
from ..tasks.inputs import PREFETCH_BATCHES, text_features
from . import kinds
from .sources import Item, digest, embedded_items, image_items, text_items
from .store import Writer

DEFAULT_MODEL = DEFAULT["clip"]
STAGE_ROWS = 1000  # given vectors staged per transaction: a killed build keeps what it staged


@dataclass
class Report:
    count: int = 0  # items in the index after the commit
    embedded: int = 0  # embedded by this run
    reused: int = 0  # embedded by an earlier, interrupted run
    given: int = 0  # taken from a folder of embeddings as they were
    unchanged: int = 0  # already in the index with the same content
    removed: int = 0
    version: int = 0
    kind: str = ""
    skipped: Skipped = field(default_factory=Skipped)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "skipped"}


def build(source, out, model=None, *, texts=None, format=None, image_root=None, kind: str = "auto",
          batch_size: int = 32, progress: bool = False, device: str = "auto", precision: str = "auto",
          workers: int | None = None) -> Report:
    """Make `out` hold exactly the images of `source` (a folder or dataset; None: none) and the lines of `texts`;
    an existing index is updated: new and changed items embedded, vanished ones removed. The model (default: the
    embedded shapes-clip) runs on `device` at `precision` (see clipblip/runtime.py); `workers` threads read,
    decode and preprocess images ahead of it (None: tasks.inputs.default_workers(); 0: in the calling thread).
    A folder `clipblip embed --format npy|parquet` wrote is indexed from its vectors, embedding nothing; its model
    is the index's."""
    _check_kind(kind)
    if is_embeddings(source):
        return _sync(out, *_given(source, model, texts, format), True, kind)
    found = _items(source, texts, format, image_root)
    return _sync(out, _embedder(model or DEFAULT_MODEL, batch_size, progress, (device, precision, workers)), found,
                 True, kind)


def add(index, source, *, texts=None, format=None, image_root=None, batch_size: int = 32,
        progress: bool = False, device: str = "auto", precision: str = "auto", workers: int | None = None) -> Report:
    """Add the images of `source` and the lines of `texts` to an existing index (changed ones re-embedded);
    `workers` as in `build`. An embeddings folder made with the index's model adds its vectors."""
    with Writer(index) as w:
        model = w.state["model"]
    if is_embeddings(source):
        return _sync(index, *_given(source, None, texts, format), False, None)  # _sync names a model mismatch
    found = _items(source, texts, format, image_root)
    return _sync(index, _embedder(model, batch_size, progress, (device, precision, workers)), found, False, None)


def delete(index, ids) -> tuple[Report, list[int]]:
    """Remove items by id; returns the report and the ids that were not there."""
    with Writer(index) as w:
        before = w.state.get("count", 0)
        missing = w.delete([int(i) for i in ids])
        st = w.state
    return Report(count=st["count"], removed=before - st["count"], version=st["version"], kind=st["kind"]), missing


def _items(source, texts, format, image_root) -> tuple[list[Item], Skipped]:
    skipped = Skipped()
    items = image_items(source, format=format, image_root=image_root, skipped=skipped) if source else []
    items += text_items(texts) if texts else []
    if not items:
        why = f"; every record was rejected, the first: {skipped.items[0][0]}: {skipped.items[0][1]}" if skipped else ""
        raise ClipBlipError(f"nothing to index in {source or texts}: no images (or captioned records) found{why}")
    return items, skipped


def _check_kind(kind) -> None:
    if kind not in ("auto", *kinds.KINDS):
        raise ClipBlipError(f"unknown index kind {kind!r}; choose auto or one of {', '.join(kinds.KINDS)}")


@dataclass
class Vectors:
    """Where the vectors of an index come from: a model that embeds the items, or a folder of embeddings."""
    name: str  # the model's, as the index records it
    dim: int
    stage: Callable[[Writer, list[Item]], int]  # stages the items' vectors; returns how many could not be read
    given: bool = False  # the items carry their vectors: nothing is embedded


def _embedder(model_source, batch_size: int, progress: bool, runtime) -> Vectors:
    from ..loading import load

    model = load(model_source, device=runtime[0], precision=runtime[1])
    return Vectors(model_name(model_source), model.config.embed_dim,
                   partial(_embed, model=model, batch_size=batch_size, progress=progress, workers=runtime[2]))


def _given(folder, model_source, texts, format) -> tuple[Vectors, tuple[list[Item], Skipped]]:
    """The vectors of an embeddings folder (staged as they are) and its items."""
    if texts or format:
        raise ClipBlipError(f"{folder} holds embeddings: index it alone (no --texts or --format), then add texts "
                            "with `clipblip index add INDEX --texts FILE`")
    skipped = Skipped()
    manifest, items = embedded_items(folder, skipped)
    if model_source is not None and model_name(model_source) != manifest["model"]:
        raise ClipBlipError(f"{folder} was embedded with {manifest['model']}, not {model_name(model_source)}: "
                            "index it with its model (leave out --model), or embed it again with yours")
    if not items:
        raise ClipBlipError(f"nothing to index in {folder}: it holds no embeddings")
    return Vectors(manifest["model"], manifest["dim"], _stage_given, given=True), (items, skipped)


def _sync(out, vectors: Vectors, found, mirror: bool, kind) -> Report:
    """Bring the index at `out` to the items `found`, staging the vectors of those it does not hold yet."""
    items, skipped = found
    name, dim = vectors.name, vectors.dim
    with Writer(out, name, dim) as w:
        if (w.state["model"], w.state["dim"]) != (name, dim):
            raise ClipBlipError(f"{out} was built with {w.state['model']} ({w.state['dim']}-d), not {name}: give "
                                "another --out, or build with the index's model")
        report = Report(skipped=skipped)
        known = w.items()
        hashes = _hashes(items, skipped)
        todo = [it for it in items if it.key in hashes and known.get(it.key, (None, None))[1] != hashes[it.key]]
        report.unchanged = sum(1 for it in items if it.key in hashes) - len(todo)
        done = w.pending()
        fresh = [it for it in todo if done.get(it.key, ("",))[0] != hashes[it.key]]
        report.reused = sum(1 for it in todo if done.get(it.key) == (hashes[it.key], True))
        staged = len(fresh) - vectors.stage(w, fresh)
        report.given, report.embedded = (staged, 0) if vectors.given else (0, staged)
        for item, reason in w.pending_errors(it.key for it in todo):
            skipped.add(item, reason)
        upserts, removes = _changes(w, items, todo, known, mirror)
        if upserts or removes or w.state["version"] == 0 or (kind not in (None, w.state["policy"])):
            w.commit(upserts, removes, policy=kind)
        st = w.state
    report.count, report.removed, report.version, report.kind = st["count"], len(removes), st["version"], st["kind"]
    return report


def _hashes(items: list[Item], skipped: Skipped) -> dict[str, str]:
    out = {}
    for it in items:
        try:
            out[it.key] = digest(it.content())
        except OSError as e:
            skipped.add(it.path or it.key, f"cannot read: {e.strerror or e}")
    return out


def _changes(w: Writer, items, todo, known, mirror: bool) -> tuple[list[tuple[int, str]], list[int]]:
    """(id, key) to insert from pending, in source order (new keys get the next ids, changed ones keep theirs),
    and the ids to remove: changed items that no longer read, and (mirror) items no longer in the source."""
    staged = {k for (k,) in w.conn.execute("SELECT key FROM pending WHERE vector IS NOT NULL")}
    next_id, upserts, removes = w.state["next_id"], [], []
    for it in todo:
        if it.key in staged:
            if it.key in known:
                upserts.append((known[it.key][0], it.key))
            else:
                upserts.append((next_id, it.key))
                next_id += 1
        elif it.key in known:
            removes.append(known[it.key][0])
    if mirror:
        present = {it.key for it in items}
        removes += [i for key, (i, _) in known.items() if key not in present]
    return upserts, removes


def _stage_given(w: Writer, todo: list[Item]) -> int:
    """Stage vectors an earlier `clipblip embed` made, as `_embed` stages the ones it makes; none is unreadable."""
    for s in range(0, len(todo), STAGE_ROWS):
        w.stage([_row(it, digest(it.content()), it.meta, vector=it.vector) for it in todo[s:s + STAGE_ROWS]])
    return 0


def _embed(w: Writer, todo: list[Item], *, model, batch_size: int, progress: bool, workers) -> int:
    """Embed `todo` into pending, batch by batch; returns how many could not be read. The images of every batch
    are read in one stream of decoding threads, ahead of the batch the model works on."""
    bad, starts = 0, range(0, len(todo), batch_size)
    read = ordered_map(partial(_read_image, model.preprocess), [it for it in todo if it.text is None], workers,
                       PREFETCH_BATCHES * batch_size)
    with closing(read):
        for s in tqdm(starts, desc="embedding", unit="batch", disable=not progress or len(starts) < 2):
            batch = todo[s:s + batch_size]
            texts = [it for it in batch if it.text is not None]
            rows = _embed_images(model, list(itertools.islice(read, len(batch) - len(texts))))
            if texts:
                feats = text_features(model, [it.text for it in texts]).numpy()
                rows += [_row(it, digest(it.text.encode()), it.meta, vector=v) for it, v in zip(texts, feats)]
            w.stage(rows)
            bad += sum(r["error"] is not None for r in rows)
    return bad


def _read_image(pre, it: Item):
    """(item, hash, meta, size, uint8 pixels [3, S, S]), or the item's error row; runs in a decoding thread (the
    batch is normalized by the consumer, see `Preprocess.uint8`)."""
    try:
        data = it.content()
        image = load_image(data)  # the bytes just hashed: one bounded read, and what is embedded is what is hashed
        pixels = pre.uint8(image)
    except OSError as e:
        return _row(it, "", it.meta, error=f"cannot read: {e.strerror or e}")
    except ClipBlipError as e:
        return _row(it, digest(data), it.meta, error=str(e))
    meta = {"kind": "image", "width": image.width, "height": image.height, **it.meta}
    return it, digest(data), meta, len(data), pixels


@torch.no_grad()
def _embed_images(model, read: list) -> list[dict]:
    """Rows for images from `_read_image`: the unreadable ones first, then the embedded ones, each in order."""
    rows = [r for r in read if isinstance(r, dict)]
    good = [r for r in read if not isinstance(r, dict)]
    if good:
        pixels = model.preprocess.normalize(torch.stack([px for *_, px in good])).to(model.device)
        feats = F.normalize(model.encode_image(pixels).float(), dim=-1).cpu().numpy()
        rows += [_row(it, h, meta, vector=v, size=size) for (it, h, meta, size, _), v in zip(good, feats)]
    return rows


def _row(it: Item, hash_: str, meta: dict, vector: np.ndarray | None = None, error: str | None = None,
         size: int | None = None) -> dict:
    return {"key": it.key, "hash": hash_, "path": it.path, "caption": it.caption,
            "size": size if size is not None else (len(it.text.encode()) if it.text else None),
            "meta": json.dumps(meta), "vector": None if vector is None else np.asarray(vector, np.float32).tobytes(),
            "error": error}
