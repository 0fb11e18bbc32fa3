"""The faiss file and the SQLite metadata are one consistent pair: for readers, across failed writes, leftovers."""

import numpy as np
import pytest
from index_helpers import write_shapes

from clipblip import ClipBlipError
from clipblip.index import Index, add, build
from clipblip.index.store import Writer, faiss_name


def test_leftovers_of_a_killed_commit_are_ignored_then_replaced(shapes, tmp_path):
    out = tmp_path / "ix"
    build(shapes, out, "shapes-clip")
    (out / faiss_name(2)).write_bytes(b"written, but its commit never happened")
    (out / f".{faiss_name(2)}.4242.tmp").write_bytes(b"half a file")
    idx = Index.open(out)
    assert (idx.version, len(idx)) == (1, 20)
    write_shapes(tmp_path / "more", 40, 43)
    assert add(out, tmp_path / "more").version == 2
    assert not list(out.glob(".*.tmp"))
    assert (Index.open(out).version, len(Index.open(out))) == (2, 23)


def test_an_open_index_follows_new_versions_and_old_files_go_one_version_late(shapes, tmp_path):
    out = tmp_path / "ix"
    build(shapes, out, "shapes-clip")
    idx = Index.open(out)
    write_shapes(tmp_path / "a", 40, 43)
    add(out, tmp_path / "a")
    assert sorted(p.name for p in out.glob("*.faiss")) == [faiss_name(1), faiss_name(2)]
    idx.search(idx._faiss.reconstruct(0)[None], 1)
    assert (idx.version, len(idx)) == (2, 23)
    write_shapes(tmp_path / "b", 50, 52)
    add(out, tmp_path / "b")
    assert sorted(p.name for p in out.glob("*.faiss")) == [faiss_name(2), faiss_name(3)]


def test_a_commit_that_fails_leaves_the_old_pair_and_keeps_the_embeddings(shapes, tmp_path, monkeypatch):
    out = tmp_path / "ix"
    build(shapes, out, "shapes-clip")
    write_shapes(tmp_path / "more", 40, 44)

    def crash(self, index, version):  # the faiss file is written, the SQLite commit never comes
        (self.path / faiss_name(version)).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Writer, "_write", crash)
    with pytest.raises(KeyboardInterrupt):
        add(out, tmp_path / "more")
    idx = Index.open(out)
    assert (idx.version, len(idx)) == (1, 20)
    monkeypatch.undo()
    r = add(out, tmp_path / "more")
    assert (r.embedded, r.reused, r.count, r.version) == (0, 4, 24, 2)


def test_errors_say_what_to_do(shapes, tmp_path):
    with pytest.raises(ClipBlipError, match="no such index"):
        Index.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipBlipError, match="clipblip index build"):
        Index.open(tmp_path / "empty")
    out = tmp_path / "ix"
    build(shapes, out, "shapes-clip")
    (out / faiss_name(1)).write_bytes(b"garbage")
    with pytest.raises(ClipBlipError, match="corrupt"):
        Index.open(out)
    (out / "meta.sqlite").write_bytes(b"garbage" * 1000)
    with pytest.raises(ClipBlipError, match="not a readable index database"):
        Index.open(out)


def test_one_writer_at_a_time_and_no_reader_before_the_first_commit(tmp_path):
    with Writer(tmp_path / "ix", "shapes-clip", 128):
        with pytest.raises(ClipBlipError, match="another process is writing"):
            Writer(tmp_path / "ix")
    with pytest.raises(ClipBlipError, match="no committed version"):
        Index.open(tmp_path / "ix")
    with pytest.raises(ClipBlipError, match="is a file"):
        (tmp_path / "f").write_text("")
        Writer(tmp_path / "f", "shapes-clip", 128)


def test_ivfpq_hits_are_rescored_exactly_with_the_stored_vectors(tmp_path):
    x = np.random.default_rng(0).standard_normal((2000, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with Writer(tmp_path / "ix", "synthetic", 128) as w:
        w.stage([{"key": f"v{i}", "hash": str(i), "path": None, "caption": f"vector {i}", "size": None, "meta": "{}",
                  "vector": v.tobytes(), "error": None} for i, v in enumerate(x)])
        assert w.commit([(i, f"v{i}") for i in range(2000)], [], policy="ivfpq")["kind"] == "ivfpq"
    idx = Index.open(tmp_path / "ix")
    q = x[:50] + 0.05 * np.random.default_rng(1).standard_normal((50, 128)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :5]
    hits = idx.search(q, 5)
    for row, qv, best in zip(hits, q, truth):
        assert [h.score for h in row] == pytest.approx([float(x[h.id] @ qv) for h in row], abs=1e-5)  # exact
        assert row[0].id == best[0] and row[0].caption == f"vector {best[0]}"
    assert np.mean([len({h.id for h in row} & set(best)) / 5 for row, best in zip(hits, truth)]) >= 0.95
