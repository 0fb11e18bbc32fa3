"""A build killed with SIGKILL mid-way leaves the previous index readable, and the same command run again embeds
only what the killed run did not, ending with the index an uninterrupted build makes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from index_helpers import faiss_vectors, rows, write_shapes

from clipblip.index import Index

BATCH = 2


def _cmd(folder, out) -> list[str]:
    return [sys.executable, "-m", "clipblip.cli", "index", "build", str(folder), "--out", str(out), "--batch-size",
            str(BATCH), "--json"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(cmd) -> dict:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _pending(out) -> int:
    try:
        with sqlite3.connect(f"file:{out / 'meta.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
    except sqlite3.OperationalError:  # the database or its table is not there yet
        return 0


def _kill_after(cmd, out, batches: int, timeout: float = 120) -> int:
    """Start the build, SIGKILL it once `batches` batches are staged; returns the rows staged at the kill."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while _pending(out) < batches * BATCH:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("the build ended or stalled before it was killed")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return _pending(out)


def test_sigkill_mid_build_then_resume_equals_an_uninterrupted_build(tmp_path):
    folder = tmp_path / "images"
    write_shapes(folder, 0, 30)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _run(_cmd(folder, cut))  # version 1: the first 30 scenes
    write_shapes(folder, 30, 150)
    _run(_cmd(folder, whole))  # the uninterrupted build, by the same command (the same batches)

    staged = _kill_after(_cmd(folder, cut), cut, batches=5)
    assert 10 <= staged < 120, "the build finished before it was killed"
    idx = Index.open(cut)  # the previous index, whole and searchable
    assert (idx.version, len(idx)) == (1, 30)
    assert [h[0].id for h in idx.search(np.stack([idx._faiss.reconstruct(i) for i in range(30)]), 1)] == \
        list(range(30))

    report = _run(_cmd(folder, cut))
    assert (report["reused"], report["embedded"], report["count"]) == (staged, 120 - staged, 150)

    assert rows(cut) == rows(whole)  # ids, paths, captions, hashes, metadata and vector bytes
    a, b = faiss_vectors(Index.open(cut)), faiss_vectors(Index.open(whole))
    assert a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)
