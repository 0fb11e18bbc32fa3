"""Which faiss index for how many vectors, how to make one, and its search-time settings.

Every kind scores by inner product (the vectors are L2-normalised, so the score is the cosine) and carries our
ids: flat and HNSW inside an `IndexIDMap2`, IVF with its own ids (`add_with_ids`; an IDMap around IVF would
break on `remove_ids`, which IVF does not renumber). HNSW cannot remove vectors: a delete rebuilds it.

The defaults below come from `bench/bench_index.py` (1M clustered 512-d vectors, 2-core CPU): see bench/README.md.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ClipBlipError
from ..extras import require

if TYPE_CHECKING:
    import faiss

KINDS = ("flat", "ivf", "ivfpq", "hnsw")
# Measured at 1M x 512 (bench/bench_index.py, shared 2-core CPU): exact search takes ~215 ms a query, so ~10 ms
# up to ~40k vectors. nprobe: the smallest with recall@10 >= 0.95 (IVF-Flat 16: 0.964; IVF-PQ with its exact
# rerank 32: 0.969). efSearch 128: recall@10 0.987 at 200k (64: 0.977), a margin for larger graphs.
FLAT_MAX = 40_000
NPROBE = {"ivf": 16, "ivfpq": 32}
EF_SEARCH = 128
HNSW_M = 32  # HNSW links per node
PQ_BYTES = 64  # IVF-PQ code size per vector (64 sub-quantizers of 8 bits)
RERANK = 10  # IVF-PQ: search k x RERANK by PQ codes, re-score them exactly with the vectors kept in SQLite
TRAIN_PER_LIST = 64  # IVF k-means sample: 64 vectors per list (faiss warns below 39)


def faiss_lib() -> ModuleType:
    """faiss, which the index extra installs, imported where an index is made, read or written: this package (and
    the parser that lists KINDS for every command) imports without it."""
    return require("faiss", "index", "the search index (clipblip index, serve --index)")


def choose(n: int, dim: int, memory_bytes: int | None = None) -> str:
    """The kind for n vectors: exact up to FLAT_MAX, then IVF; IVF-PQ when the raw vectors would take more
    than half the memory (default: this machine's RAM)."""
    if n <= FLAT_MAX:
        return "flat"
    memory = memory_bytes if memory_bytes is not None else _ram()
    return "ivfpq" if n * dim * 4 > memory // 2 else "ivf"


def nlist(n: int) -> int:
    """IVF lists: the power of two nearest sqrt(n) (1M -> 1024), so a list holds ~sqrt(n) vectors."""
    return max(16, 2 ** round(np.log2(max(n, 1)) / 2))


def make(kind: str, dim: int, vectors: np.ndarray, seed: int = 0) -> faiss.Index:
    """An empty index of `kind`, trained (IVF) on a sample of `vectors` [n, dim]."""
    faiss = faiss_lib()
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(hnsw)
    if kind not in ("ivf", "ivfpq"):
        raise ClipBlipError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} (or auto)")
    lists = nlist(len(vectors))
    need = lists if kind == "ivf" else max(lists, 256)  # PQ: 256 centroids per sub-quantizer
    if len(vectors) < need:
        raise ClipBlipError(f"an {kind} index needs at least {need} vectors to train; this one has "
                            f"{len(vectors)}: use --kind flat (or auto)")
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    else:
        if dim % PQ_BYTES:
            raise ClipBlipError(f"ivfpq splits a vector into {PQ_BYTES} parts; dim {dim} does not divide: use ivf")
        index = faiss.IndexIVFPQ(quantizer, dim, lists, PQ_BYTES, 8, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    take = min(len(vectors), TRAIN_PER_LIST * lists)
    sample = vectors[np.sort(rng.choice(len(vectors), take, replace=False))]
    index.cp.seed = seed
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    tune(index)
    return index


def tune(index: faiss.Index, ef_search: int = EF_SEARCH) -> None:
    """Set the search-time settings (they are not all kept by faiss's file format)."""
    faiss = faiss_lib()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(NPROBE[kind_of(index)], ivf.nlist)
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = ef_search


def kind_of(index: faiss.Index) -> str:
    faiss = faiss_lib()
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    for cls, kind in ((faiss.IndexIVFPQ, "ivfpq"), (faiss.IndexIVFFlat, "ivf"), (faiss.IndexHNSW, "hnsw"),
                      (faiss.IndexFlat, "flat")):
        if isinstance(inner, cls):
            return kind
    raise ClipBlipError(f"unexpected faiss index type {type(inner).__name__}")


def can_remove(kind: str) -> bool:
    return kind != "hnsw"


def _ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 16 GiB
        return 16 * 2**30
