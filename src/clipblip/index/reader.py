"""`Index`: a built index opened read-only; `search` returns `Hit`s with their metadata.

Each search checks, in the same read transaction as its metadata lookup, that the faiss index in memory is the
version SQLite names, and loads the new one when a writer has committed since (see store.py), so vectors and
metadata always match. Searches hold a lock (faiss parallelises each one itself), so an `Index` can be shared
by the threads of a server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ClipBlipError
from . import kinds, store


@dataclass
class Hit:
    id: int
    score: float
    path: str | None
    caption: str | None
    meta: dict = field(default_factory=dict)  # size (bytes), hash, width/height, the dataset record's fields


class Index:
    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path, self._conn, self._lock = path, conn, threading.Lock()
        self._faiss, self.state = None, {}
        with self._lock:
            self._read(lambda: None)

    @classmethod
    def open(cls, path) -> Index:
        path = Path(path)
        if not path.is_dir():
            raise ClipBlipError(f"{path}: no such index; make one with `clipblip index build DIR --out {path}`")
        return cls(path, store.connect(path, readonly=True))

    @property
    def dim(self) -> int:
        return self.state["dim"]

    @property
    def model(self) -> str:
        return self.state["model"]

    @property
    def kind(self) -> str:
        return self.state["kind"]

    @property
    def version(self) -> int:
        return self.state["version"]

    def __len__(self) -> int:
        return self._faiss.ntotal

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}: {len(self)} x {self.dim}, {self.kind}, model {self.model!r})"

    def close(self) -> None:
        self._conn.close()

    def search(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Per query row, up to k hits best first (score: inner product = cosine for normalised vectors)."""
        x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ClipBlipError(f"queries must be [n, {self.dim}] (this index's dimension); got {list(x.shape)}: "
                                f"embed them with the index's model, {self.model}")
        if k < 1:
            raise ClipBlipError(f"k must be at least 1, got {k}")
        with self._lock:
            return self._read(lambda: self._hits(x, k))

    def _read(self, work):
        """Run `work` in one read transaction, on the faiss version that transaction sees (reloading it if it
        changed; a file removed under us means newer versions were committed: look again)."""
        for _ in range(5):
            self._conn.execute("BEGIN")
            try:
                state = store.read_state(self._conn)
                if state.get("version", 0) == 0:
                    raise ClipBlipError(f"{self.path}: the index has no committed version yet (a build was "
                                        "interrupted before its first commit): run the build again to finish it")
                if self._faiss is None or state["version"] != self.state.get("version"):
                    self._faiss, self.state = store.load_faiss(self.path, state["version"]), state
                return work()
            except FileNotFoundError:
                continue
            finally:
                self._conn.execute("COMMIT")
        raise ClipBlipError(f"{self.path}: its faiss file keeps disappearing; is something deleting it?")

    def _hits(self, x: np.ndarray, k: int) -> list[list[Hit]]:
        # PQ scores are approximate: re-score a kinds.RERANK times longer shortlist with the stored vectors
        exact = self.kind == "ivfpq"
        scores, ids = self._faiss.search(x, k * kinds.RERANK if exact else k)
        rows = self._rows(sorted({int(i) for i in ids.ravel() if i >= 0}), exact)
        out = []
        for q, (row_ids, row_scores) in enumerate(zip(ids, scores)):
            found = [(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0 and int(i) in rows]
            if exact:
                found = [(i, float(np.frombuffer(rows[i][-1], np.float32) @ x[q])) for i, _ in found]
                found = sorted(found, key=lambda t: -t[1])[:k]
            out.append([_hit(rows[i], s) for i, s in found])
        return out

    def _rows(self, ids: list[int], vectors: bool) -> dict[int, tuple]:
        cols, rows = store.ROW + (", vector" if vectors else ""), {}
        for s in range(0, len(ids), 500):  # SQLite caps the number of ? parameters
            chunk = ids[s:s + 500]
            for r in self._conn.execute(f"SELECT {cols} FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                rows[r[0]] = r
        return rows


def _hit(row, score: float) -> Hit:
    id_, path, caption, size, hash_, meta = row[:6]
    return Hit(id=id_, score=score, path=path, caption=caption, meta={"size": size, "hash": hash_, **json.loads(meta)})
