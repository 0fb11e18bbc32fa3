"""Embeddings as other tools read them: a folder of numbered shards, written by `clipblip embed --format npy|parquet`
and read back by `clipblip index build` (no embedding again).

The layout is clip-retrieval's, which faiss tooling (autofaiss), pandas and Spark read directly:

    embed.json                    the manifest: model, dim, dtype, normalized, shard size, the inputs' hash, the
                                  finished shards (each with the inputs it skipped), complete or not
    img_emb/img_emb_0000.npy      float32 [rows, dim], at most `shard_size` rows (text_emb/text_emb_0000.npy: texts)
    metadata.parquet              one row per vector: kind, path, text, caption, shard, row   (format npy)
    img_emb/img_emb_0000.parquet  (format parquet) those columns and `embedding` (list<float>) in one table a shard

Shard k of a kind holds the readable inputs k*S .. (k+1)*S-1, in input order: a bad image drops its own row and
never moves another input into another shard, so the finished shards of a killed run stay valid. Each shard file is
written atomically, then the manifest names it; a re-run with the same inputs and model embeds only the shards the
manifest does not name (or whose file is gone), in the batches the first run would have used, so it ends with the
bytes an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ClipBlipError
from ..extras import require
from ..files import atomic_path, atomic_write, item_limit, read_bounded, read_item, write_atomic
from ..jobs import Skipped
from ..tasks.inputs import image_features, text_features

FORMATS = ("npy", "parquet")
MANIFEST, METADATA = "embed.json", "metadata.parquet"
FOLDERS = {"image": "img_emb", "text": "text_emb"}  # kind -> the folder (and file prefix) of its shards
DEFAULT_SHARD_SIZE = 10_000
META_ROW_BYTES = 1 << 16  # the cap on one row's metadata (path, caption) when a shard or metadata file is read
NOT_UTF8 = "its file name is not UTF-8, which the metadata's strings must be: rename the file"
LAYOUT_KEYS = ("format", "model", "shard_size", "inputs")  # what a resumed run must share with the first


@dataclass
class Written:
    out: Path
    format: str
    rows: dict[str, int]  # kind -> vectors in the folder
    shards: dict[str, int]  # kind -> shard files
    embedded: int = 0  # shards this run embedded
    reused: int = 0  # shards an earlier (interrupted) run finished
    skipped: Skipped = field(default_factory=Skipped)


def model_name(source) -> str:
    """The name an embeddings folder or an index records for a model: a path made absolute, a catalog name as is."""
    return str(Path(source).resolve()) if Path(source).exists() else str(source)


def sidecar_caption(image: Path) -> str | None:
    """The first non-empty line of the .txt beside an image, as index sources read captions; None without one."""
    try:
        text = read_bounded(Path(image).with_suffix(".txt"), item_limit()).decode("utf-8", "replace")
    except OSError:  # none, or not a file a caption can be read from: the image goes without one
        return None
    lines = [t.strip() for t in text.splitlines() if t.strip()]
    return lines[0] if lines else None


def is_embeddings(path) -> bool:
    return path is not None and (Path(path) / MANIFEST).is_file()


def shard_path(out, kind: str, shard: int, format: str) -> Path:
    prefix = FOLDERS[kind]
    return Path(out) / prefix / f"{prefix}_{shard:04d}.{format}"


def arrow(what: str):
    """pyarrow and pyarrow.parquet, or the parquet extra's one-line error."""
    pa = require("pyarrow", "parquet", what)
    import pyarrow.parquet as pq

    return pa, pq


# ---------------------------------------------------------------------------------------------------- writing


@dataclass
class Job:
    """An embedding run, checked against its folder before the model loads (a mistake costs no loading time)."""
    out: Path
    inputs: dict[str, list[str]]  # kind -> absolute image paths, or texts
    manifest: dict  # the folder's own when it resumes a run, else a new one


def plan(out, images=(), texts=(), *, name: str, format: str = "npy", shard_size: int = DEFAULT_SHARD_SIZE) -> Job:
    """The run that embeds `images` (paths) and `texts` into the folder `out`, resuming a killed run of the same
    inputs and model (`name`, as `model_name` gives it); a folder of other inputs or another model is an error."""
    if format not in FORMATS:
        raise ClipBlipError(f"unknown embeddings format {format!r}: choose {' or '.join(FORMATS)}")
    if shard_size < 1:
        raise ClipBlipError(f"the shard size must be at least 1 row, not {shard_size}")
    arrow(f"clipblip embed --format {format}")
    inputs = {"image": [str(Path(p).absolute()) for p in images], "text": list(texts)}
    manifest = _start(Path(out), {"format": format, "model": name, "dim": None, "dtype": "float32",
                                  "normalized": True, "shard_size": shard_size, "inputs": _hash(inputs),
                                  "count": {k: len(v) for k, v in inputs.items()}})
    return Job(Path(out), inputs, manifest)


def write_embeddings(model, job: Job, *, batch_size: int = 32, workers: int | None = None,
                     progress: bool = False) -> Written:
    """Run `job` with `model`: the shards its folder does not hold yet, each written atomically and then named in
    the manifest, then (npy) metadata.parquet. Bad images are skipped and listed."""
    out, inputs, manifest = job.out, job.inputs, job.manifest
    if manifest["dim"] not in (None, model.config.embed_dim):
        raise ClipBlipError(f"{out} holds {manifest['dim']}-d embeddings and the model makes "
                            f"{model.config.embed_dim}-d ones: give another --output")
    manifest["dim"], size, format = model.config.embed_dim, manifest["shard_size"], manifest["format"]
    pa, pq = arrow(f"clipblip embed --format {format}")
    shards = [(kind, s) for kind in FOLDERS for s in range(-(-len(inputs[kind]) // size))]
    todo = [(kind, s) for kind, s in shards if not _finished(out, manifest, kind, s)]
    if todo or not manifest["complete"]:
        manifest["complete"] = False
        _save(out, manifest)
    for kind, s in tqdm(todo, desc="shards", unit="shard", disable=not progress or len(todo) < 2):
        lo = s * size
        vectors, kept, bad = _embed(model, kind, inputs[kind][lo:lo + size], batch_size, workers,
                                    progress and len(todo) == 1)
        path = shard_path(out, kind, s, format)
        if format == "npy":
            with atomic_write(path, "wb") as f:
                np.save(f, vectors)
        else:
            with atomic_path(path) as tmp:
                pq.write_table(_table(pa, kind, inputs[kind], s, [lo + i for i in kept], vectors), tmp)
        manifest["done"][kind][str(s)] = {"rows": len(kept), "skipped": [[lo + i, item, why] for i, item, why in bad]}
        _save(out, manifest)
    if format == "npy":
        tables = [_table(pa, kind, inputs[kind], s, _kept(manifest, kind, s, len(inputs[kind]))) for kind, s in shards]
        with atomic_path(out / METADATA) as tmp:
            pq.write_table(pa.concat_tables(tables) if tables else _table(pa, "image", [], 0, []), tmp)
    manifest["complete"] = True
    _save(out, manifest)
    return _written(out, manifest, shards, len(shards) - len(todo))


def _start(out: Path, header: dict) -> dict:
    """The manifest to continue: the folder's own when it is a run of the same inputs and model, else a new one."""
    if out.exists() and not out.is_dir():
        raise ClipBlipError(f"{out} is a file; --format {header['format']} writes a folder: give a folder name")
    if not (out / MANIFEST).is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ClipBlipError(f"{out} is not empty and holds no {MANIFEST}: give a new or empty folder")
        return {**header, "done": {kind: {} for kind in FOLDERS}, "complete": False}
    old = read_manifest(out)
    for key in LAYOUT_KEYS:
        if old[key] != header[key]:
            what = {"model": f"made with {old['model']}, not {header['model']}",
                    "inputs": f"of other inputs ({old['count']['image']} images, {old['count']['text']} texts)"}
            raise ClipBlipError(f"{out} holds embeddings {what.get(key, f'with {key} {old[key]}, not {header[key]}')}"
                                f": give another --output, or delete {out} to start over")
    return old


def _hash(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def _finished(out: Path, manifest: dict, kind: str, s: int) -> bool:
    return str(s) in manifest["done"][kind] and shard_path(out, kind, s, manifest["format"]).is_file()


def _save(out: Path, manifest: dict) -> None:
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))


def _embed(model, kind: str, items: list, batch_size: int, workers, progress: bool):
    """(float32 vectors [rows, dim], the positions in `items` they belong to, [(position, item, why)] skipped)."""
    if kind == "text":
        return text_features(model, items, progress=progress).numpy(), list(range(len(items))), []
    why = {i: NOT_UTF8 for i, p in enumerate(items) if not _is_utf8(p)}
    named = [i for i in range(len(items)) if i not in why]
    feats, kept, skipped = image_features(model, [items[i] for i in named], batch_size, skip_bad=True,
                                          progress=progress, workers=workers)
    bad = sorted(set(range(len(named))) - set(kept))  # Skipped lists them in input order, one per bad position
    why.update({named[j]: reason for j, (_, reason) in zip(bad, skipped.items)})
    return feats.numpy(), [named[j] for j in kept], [(i, items[i], why[i]) for i in sorted(why)]


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: a byte of a file name (or argument) that is not UTF-8
        return False
    return True


def _text(text: str) -> str:
    """A text as UTF-8 can hold it: the bytes that were not UTF-8 become U+FFFD, as the tokenizers read them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if not _is_utf8(text) else text


def _kept(manifest: dict, kind: str, s: int, n: int) -> list[int]:
    size = manifest["shard_size"]
    bad = {i for i, *_ in manifest["done"][kind][str(s)]["skipped"]}
    return [i for i in range(s * size, min(n, (s + 1) * size)) if i not in bad]


def _table(pa, kind: str, inputs: list, s: int, kept: list[int], vectors: np.ndarray | None = None):
    """The metadata of shard `s` (its rows: input positions `kept`), with the vectors as a list<float> column."""
    image = kind == "image"
    columns = {
        "kind": pa.array([kind] * len(kept), pa.string()),
        "path": pa.array([inputs[i] if image else None for i in kept], pa.string()),
        "text": pa.array([None if image else _text(inputs[i]) for i in kept], pa.string()),
        "caption": pa.array([sidecar_caption(Path(inputs[i])) if image else None for i in kept], pa.string()),
        "shard": pa.array([s] * len(kept), pa.int32()),
        "row": pa.array(range(len(kept)), pa.int32()),
    }
    if vectors is not None:
        offsets = pa.array(np.arange(0, vectors.size + 1, max(1, vectors.shape[1]), dtype=np.int32))
        columns["embedding"] = pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel(), pa.float32()))
    return pa.table(columns)


def _written(out: Path, manifest: dict, shards: list, reused: int) -> Written:
    done = manifest["done"]
    w = Written(out, manifest["format"], {k: sum(v["rows"] for v in done[k].values()) for k in FOLDERS},
                {k: sum(1 for kind, _ in shards if kind == k) for k in FOLDERS}, len(shards) - reused, reused)
    for kind, s in shards:
        for _, item, why in done[kind][str(s)]["skipped"]:
            w.skipped.add(item, why)
    return w


# ---------------------------------------------------------------------------------------------------- reading


def read_manifest(folder) -> dict:
    """The manifest of an embeddings folder, its fields checked (it is a file anyone may have edited)."""
    path = Path(folder) / MANIFEST
    try:
        m = json.loads(read_item(path, "embeddings manifest"))
        _check_manifest(m)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ClipBlipError(f"{path} is not a manifest clipblip embed wrote ({type(e).__name__}: {e}): embed again "
                            "into a new folder") from None
    return m


def _check_manifest(m: dict) -> None:
    ok = (m["format"] in FORMATS and isinstance(m["model"], str) and isinstance(m["inputs"], str)
          and isinstance(m["complete"], bool) and _count(m["dim"]) > 0 and _count(m["shard_size"]) > 0)
    for kind in FOLDERS:
        shards = -(-_count(m["count"][kind]) // m["shard_size"])
        for s, shard in m["done"][kind].items():
            ok = ok and 0 <= int(s) < shards and 0 <= _count(shard["rows"]) <= m["shard_size"]
            ok = ok and all(isinstance(i, int) and isinstance(why, str) for i, _, why in shard["skipped"])
    if not ok:
        raise ValueError("a field is out of range")


def _count(x) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or x < 0:
        raise ValueError(f"{x!r} is not a count")
    return x


def read_shards(folder):
    """Yield (kind, vectors float32 [rows, dim], metadata rows as dicts) per shard of a finished embeddings folder,
    images first. Every file is read with a bound that its row count in the manifest sets."""
    folder = Path(folder)
    m = read_manifest(folder)
    if not m["complete"]:
        raise ClipBlipError(f"{folder}: the embedding run did not finish: run the same `clipblip embed` again to "
                            "finish it")
    meta = _group(_parquet(folder / METADATA, _total(m), 0)) if m["format"] == "npy" else None
    for kind in FOLDERS:
        for s in range(-(-m["count"][kind] // m["shard_size"])):
            rows = m["done"][kind].get(str(s), {}).get("rows")
            path = shard_path(folder, kind, s, m["format"])
            if rows is None or not path.is_file():
                raise ClipBlipError(f"{path} is missing: run the same `clipblip embed` again to make it")
            if meta is None:
                table = _parquet(path, rows, m["dim"])
                vectors = _vectors(table.column("embedding"), rows, m["dim"], path)
                records = table.drop_columns(["embedding"]).to_pylist()
            else:
                vectors = _npy(path, rows, m["dim"])
                records = meta.get((kind, s), [])
            field_ = "path" if kind == "image" else "text"
            if [(r.get("kind"), r.get("shard"), r.get("row"), isinstance(r.get(field_), str)) for r in records] != \
                    [(kind, s, i, True) for i in range(rows)]:
                raise ClipBlipError(f"{folder}: the metadata of {path.name} does not match its {rows} rows: embed "
                                    "again into a new folder")
            yield kind, vectors, records


def skipped_of(folder) -> list[tuple[str, str]]:
    """(item, why) for each input the embedding run skipped."""
    m = read_manifest(folder)
    return [(item, why) for kind in FOLDERS for s in sorted(m["done"][kind], key=int)
            for _, item, why in m["done"][kind][s]["skipped"]]


def _total(m: dict) -> int:
    return sum(shard["rows"] for kind in FOLDERS for shard in m["done"][kind].values())


def _limit(rows: int, dim: int) -> int:
    return rows * (4 * dim + META_ROW_BYTES) + (1 << 20)


def _parquet(path: Path, rows: int, dim: int):
    """A parquet file of at most `rows` rows, bounded before its data is decompressed (the footer says how much)."""
    pa, pq = arrow("reading an embeddings folder")
    try:
        data = read_bounded(path, _limit(rows, dim))
        pf = pq.ParquetFile(pa.BufferReader(data))
        md = pf.metadata
        if md.num_rows > rows:
            raise ValueError(f"it holds {md.num_rows} rows, more than the {rows} its manifest names")
        if sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups)) > _limit(rows, dim):
            raise ValueError(f"it unpacks to more than the {_limit(rows, dim)} bytes {rows} rows may take")
        return pf.read()
    except (OSError, ValueError, pa.ArrowException) as e:
        raise ClipBlipError(f"{path} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                            "embed again into a new folder") from None


def _group(table) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for r in table.to_pylist():
        out.setdefault((r.get("kind"), r.get("shard")), []).append(r)
    return out


def _npy(path: Path, rows: int, dim: int) -> np.ndarray:
    try:
        a = np.load(io.BytesIO(read_bounded(path, _limit(rows, dim))), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ClipBlipError(f"{path} cannot be read ({e}): embed again into a new folder") from None
    if not isinstance(a, np.ndarray):  # an .npz archive
        raise ClipBlipError(f"{path} is not one .npy array: embed again into a new folder")
    if a.dtype != np.float32 or a.shape != (rows, dim):
        raise ClipBlipError(f"{path} holds {a.dtype} {list(a.shape)}, not float32 [{rows}, {dim}]: embed again "
                            "into a new folder")
    return a


def _vectors(column, rows: int, dim: int, path: Path) -> np.ndarray:
    values = column.combine_chunks()
    flat = np.asarray(values.flatten(), dtype=np.float32) if rows else np.empty(0, np.float32)
    if flat.size != rows * dim or any(n != dim for n in values.value_lengths().to_pylist()):
        raise ClipBlipError(f"{path}: its embeddings are not {rows} rows of {dim}: embed again into a new folder")
    return flat.reshape(rows, dim)
