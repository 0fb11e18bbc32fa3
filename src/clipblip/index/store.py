"""An index directory: `meta.sqlite` (items with their vectors, state) + `vectors-NNNNNN.faiss`, a consistent pair.

Why this layout. SQLite is the commit point. A write opens one SQLite transaction, applies the row changes,
writes the next faiss file (`vectors-{v+1}.faiss`, through a temporary name, synced, renamed), sets
`version = v+1` and commits. A kill before the commit leaves version v, whose file is untouched (the new file is
an unreferenced leftover that the next write removes); after it, v+1 is whole. A reader takes the version and
the rows in one read transaction (WAL: writers never block it) and loads the file that version names, so it
always sees a matching pair. Old files are removed one version late, so a reader that has just read the
version still finds its file.

The vectors are kept in SQLite too (float32 blobs): the faiss file is derived from them, so it can be rebuilt as
another kind (flat -> IVF as the index grows; HNSW, which cannot delete) without embedding anything again.
`pending` holds the embeddings of a build in progress, committed per batch: a killed build resumes from them;
they become items at its final commit. `index.json` is a copy of the state for people and tools, written after
each commit; the truth is in SQLite.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ClipBlipError
from ..files import atomic_path, write_atomic
from . import kinds

if TYPE_CHECKING:
    import faiss

DB, MANIFEST, LOCK = "meta.sqlite", "index.json", ".lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, path TEXT, caption TEXT,
    size INTEGER, hash TEXT NOT NULL, meta TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, hash TEXT NOT NULL, path TEXT, caption TEXT,
    size INTEGER, meta TEXT, vector BLOB, error TEXT);
"""
ROW = "id, path, caption, size, hash, meta"  # what a search hit reads


def faiss_name(version: int) -> str:
    return f"vectors-{version:06d}.faiss"


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    db = Path(path) / DB
    if not db.is_file():
        raise ClipBlipError(f"{path} is not an index (no {DB}); make one with `clipblip index build DIR --out {path}`")
    uri = f"file:{db}?mode=ro" if readonly else f"file:{db}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("SELECT 1 FROM state LIMIT 1")
    except sqlite3.DatabaseError as e:
        raise ClipBlipError(f"{path}: {DB} is not a readable index database ({e}); rebuild the index with "
                            "`clipblip index build`") from None
    return conn


def read_state(conn: sqlite3.Connection) -> dict:
    state = dict(conn.execute("SELECT key, value FROM state"))
    return {k: json.loads(v) for k, v in state.items()}


def load_faiss(path: Path, version: int) -> faiss.Index:
    file = Path(path) / faiss_name(version)
    if not file.is_file():
        raise FileNotFoundError(file)
    try:
        index = kinds.faiss_lib().read_index(str(file))
    except RuntimeError as e:
        raise ClipBlipError(f"{file} cannot be read ({str(e).splitlines()[0]}); the index is corrupt: rebuild it "
                            "with `clipblip index build`") from None
    kinds.tune(index)
    return index


def vectors_of(blobs, dim: int) -> np.ndarray:
    """float32 blobs -> [n, dim]."""
    out = np.frombuffer(b"".join(blobs), dtype=np.float32) if blobs else np.empty(0, np.float32)
    return out.reshape(-1, dim)


class Writer:
    """The one process allowed to change an index (an exclusive lock file, released by the OS on a kill)."""

    def __init__(self, path, model: str | None = None, dim: int | None = None):
        kinds.faiss_lib()  # every change ends in a faiss file: say now if faiss is missing, not after the embedding
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ClipBlipError(f"{self.path} is a file; an index is a directory: give another --out")
        if model is None and not (self.path / DB).is_file():
            raise ClipBlipError(f"{self.path} is not an index; make one with `clipblip index build DIR --out ...`")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClipBlipError(f"another process is writing {self.path}; wait for it to finish") from None
        new = not (self.path / DB).exists()
        self.conn = (sqlite3.connect(self.path / DB, isolation_level=None, timeout=30) if new
                     else connect(self.path, readonly=False))
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(SCHEMA)
        if new:
            self._set({"model": model, "dim": dim, "version": 0, "next_id": 0, "kind": "flat", "policy": "auto",
                       "trained_n": 0})
        self.state = read_state(self.conn)

    def close(self) -> None:
        self.conn.close()
        self._lock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _set(self, values: dict) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                              [(k, json.dumps(v)) for k, v in values.items()])

    # ------------------------------------------------------------------------------------ pending (resume)

    def pending(self) -> dict[str, tuple[str, bool]]:
        """key -> (hash, embedded: False when unreadable) of what a previous (killed) run already did."""
        return {k: (h, v) for k, h, v in self.conn.execute("SELECT key, hash, vector IS NOT NULL FROM pending")}

    def stage(self, rows: list[dict]) -> None:
        """Keep a batch of embeddings (or errors) for the final commit; one transaction, so a kill keeps it whole."""
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR REPLACE INTO pending VALUES (:key, :hash, :path, :caption, :size, :meta, :vector, :error)",
                rows)

    def pending_errors(self, keys) -> list[tuple[str, str]]:
        wanted = set(keys)
        return [(p or k, e) for k, p, e in self.conn.execute(
            "SELECT key, path, error FROM pending WHERE error IS NOT NULL") if k in wanted]

    # ------------------------------------------------------------------------------------------- commit

    def items(self) -> dict[str, tuple[int, str]]:
        """key -> (id, hash) of the committed items."""
        return {k: (i, h) for i, k, h in self.conn.execute("SELECT id, key, hash FROM items")}

    def commit(self, upserts: list[tuple[int, str]], removes: list[int], policy: str | None = None,
               memory_bytes: int | None = None, clear_pending: bool = True) -> dict:
        """One atomic step: drop `removes` (ids), move the pending rows named in `upserts` ((id, key); an existing
        id keeps its number) into items, clear pending, write the next faiss file, bump the version."""
        dim, old = self.state["dim"], self.state["version"]
        changed = set(removes) | {i for i, _ in upserts}
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in sorted(changed)])
            self.conn.executemany(
                "INSERT INTO items SELECT ?, key, path, caption, size, hash, meta, vector FROM pending WHERE key = ?",
                upserts)
            if clear_pending:  # a delete leaves an interrupted build's work for its resume
                self.conn.execute("DELETE FROM pending")
            n = self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            policy = policy or self.state["policy"]
            kind = policy if policy != "auto" else kinds.choose(n, dim, memory_bytes)
            index, trained_n = self._next_faiss(kind, n, sorted(changed), [i for i, _ in upserts])
            version = old + 1
            self._write(index, version)
            next_id = max([self.state["next_id"], *(i + 1 for i, _ in upserts)])
            self._set({"version": version, "kind": kind, "policy": policy, "next_id": next_id,
                       "trained_n": trained_n, "count": n})
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.state = read_state(self.conn)
        self._tidy()
        return self.state

    def delete(self, ids: list[int]) -> list[int]:
        """Remove items by id; returns the ids that were not in the index."""
        present = {i for (i,) in self.conn.execute("SELECT id FROM items")}
        self.commit([], [i for i in ids if i in present], clear_pending=False)
        return [i for i in ids if i not in present]

    def _next_faiss(self, kind: str, n: int, removes: list[int], adds: list[int]) -> tuple[faiss.Index, int]:
        """Change the current faiss index in place when its kind allows; else rebuild it from the stored vectors
        (kind changed, HNSW delete, or an IVF trained on fewer than a quarter of today's vectors)."""
        st = self.state
        same = st["version"] > 0 and kind == st["kind"] and (kinds.can_remove(kind) or not removes)
        if same and kind in ("ivf", "ivfpq") and n > 4 * st["trained_n"]:
            same = False
        if same:
            index = load_faiss(self.path, st["version"])
            if removes:
                index.remove_ids(np.array(removes, dtype=np.int64))
            ids, vecs = self._vectors(adds)
            if len(ids):
                index.add_with_ids(vecs, ids)
            return index, st["trained_n"]
        ids, vecs = self._vectors(None)
        index = kinds.make(kind, st["dim"], vecs)
        if len(ids):
            index.add_with_ids(vecs, ids)
        return index, n

    def _vectors(self, ids: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the given items (None: all), in id order."""
        if ids is None:
            rows = self.conn.execute("SELECT id, vector FROM items ORDER BY id").fetchall()
        else:
            want = sorted(ids)
            rows = []
            for s in range(0, len(want), 500):  # SQLite caps the number of ? parameters
                chunk = want[s:s + 500]
                rows += self.conn.execute(f"SELECT id, vector FROM items WHERE id IN ({','.join('?' * len(chunk))}) "
                                          "ORDER BY id", chunk).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), vectors_of([r[1] for r in rows], self.state["dim"])

    def _write(self, index: faiss.Index, version: int) -> None:
        with atomic_path(self.path / faiss_name(version)) as tmp:
            kinds.faiss_lib().write_index(index, str(tmp))

    def _tidy(self) -> None:
        """Remove faiss files older than the previous version, leftovers of killed writes, and refresh index.json."""
        v = self.state["version"]
        keep = {faiss_name(v), faiss_name(v - 1)}
        for f in self.path.iterdir():
            if (f.name.startswith("vectors-") and f.suffix == ".faiss" and f.name not in keep) or \
                    (f.name.startswith(".vectors-") and f.name.endswith(".tmp")):
                f.unlink(missing_ok=True)
        write_atomic(self.path / MANIFEST, json.dumps({**self.state, "faiss": faiss_name(v), "db": DB}, indent=1))

