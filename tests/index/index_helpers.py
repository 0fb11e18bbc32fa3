"""Helpers shared by the index tests (a module of its own: every test folder has a conftest)."""

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

from clipblip.data.shapes import ShapesWorld


def write_shapes(folder: Path, start: int, stop: int, captions: bool = True) -> list[Path]:
    """Shapes test scenes start..stop-1 as 64 px PNGs (with their first caption in a sidecar .txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    world, paths = ShapesWorld(0), []
    for i in range(start, stop):
        s = world.sample("test", i, captions_only=True)
        path = folder / f"{i:04d}.png"
        s["image"].save(path)
        if captions:
            path.with_suffix(".txt").write_text(s["caption"])
        paths.append(path)
    return paths


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rows(index_dir) -> list[tuple]:
    """The committed items (id, key, path, caption, size, hash, meta, vector), by id."""
    with sqlite3.connect(Path(index_dir) / "meta.sqlite") as conn:
        return conn.execute("SELECT id, key, path, caption, size, hash, meta, vector FROM items ORDER BY id").fetchall()


def faiss_vectors(idx) -> dict[int, np.ndarray]:
    """id -> the vector the faiss index holds (flat and HNSW: IDMap2 can reconstruct by id)."""
    f = idx._faiss
    return {int(i): f.reconstruct(int(i)) for i in [f.id_map.at(j) for j in range(f.ntotal)]}
