"""Build, search, incremental updates and deletes on a folder of Shapes scenes, with the embedded shapes-clip."""

import json

import numpy as np
import pytest
from index_helpers import faiss_vectors, rows, sha256, write_shapes

from clipblip import ClipBlipError
from clipblip.index import Index, build, delete, kinds, query
from clipblip.index import add as add_to
from clipblip.tasks.inputs import image_features


def _vec(clip, paths) -> np.ndarray:
    """[n, 128] for a list of paths, [128] for one."""
    one = not isinstance(paths, list)
    feats = image_features(clip, [paths] if one else paths)[0].numpy()
    return feats[0] if one else feats


def test_build_stores_vectors_and_metadata_and_skips_bad_images(shapes, tmp_path, clip):
    r = build(shapes, tmp_path / "ix", "shapes-clip")
    assert (r.count, r.embedded, r.version, r.kind) == (20, 20, 1, "flat")
    assert [item.endswith("broken.png") for item, _ in r.skipped.items] == [True]
    idx = Index.open(tmp_path / "ix")
    assert (len(idx), idx.dim, idx.model, idx.kind) == (20, 128, "shapes-clip", "flat")
    images = sorted(shapes.glob("*.png"))[:20]
    vecs = _vec(clip, images)
    hits = idx.search(vecs, k=3)
    for path, h in zip(images, hits):
        top = h[0]
        assert top.path == str(path.absolute()) and top.score == pytest.approx(1.0, abs=1e-4)
        assert top.caption == path.with_suffix(".txt").read_text()
        assert top.meta["hash"] == sha256(path) and top.meta["size"] == path.stat().st_size
        assert (top.meta["width"], top.meta["height"]) == (64, 64)
        assert h[0].score >= h[1].score >= h[2].score
    # the vectors in SQLite are the ones faiss holds, and the ones the model makes
    stored = {r[0]: np.frombuffer(r[7], np.float32) for r in rows(tmp_path / "ix")}
    held = faiss_vectors(idx)
    assert stored.keys() == held.keys() == set(range(20))
    for i, path in enumerate(images):  # ids follow the sorted folder order
        assert np.array_equal(stored[i], held[i])
        np.testing.assert_allclose(stored[i], vecs[i], atol=1e-5)


def test_query_text_and_image(shapes, tmp_path, clip):
    build(shapes, tmp_path / "ix", "shapes-clip")
    idx = Index.open(tmp_path / "ix")
    target = shapes / "0007.png"
    by_image = query(idx, clip, image=str(target), k=5)
    assert len(by_image) == 5 and by_image[0].path == str(target.absolute())
    from PIL import Image

    assert query(idx, clip, image=Image.open(target), k=1)[0].id == by_image[0].id
    by_text = query(idx, "shapes-clip", text="a red circle", k=4)
    scores = [h.score for h in by_text]
    assert len(by_text) == 4 and scores == sorted(scores, reverse=True)
    # the text query's scores are the cosines with the text embedding
    from clipblip.tasks.inputs import text_features

    t = text_features(clip, ["a red circle"])[0].numpy()
    assert scores[0] == pytest.approx(float(_vec(clip, by_text[0].path) @ t), abs=1e-4)
    with pytest.raises(ClipBlipError, match="one of them"):
        query(idx, clip, text="x", image=str(target))


def test_rerank_scores_are_itm_match_probabilities(shapes, tmp_path, clip):
    import clipblip
    from clipblip.tasks.itm import match

    build(shapes, tmp_path / "ix", "shapes-clip")
    idx = Index.open(tmp_path / "ix")
    blip = clipblip.load("shapes-blip")
    text = "a small red square"
    shortlist = {h.id for h in query(idx, clip, text=text, k=6)}
    hits = query(idx, clip, text=text, k=3, blip=blip, shortlist=6)
    assert len(hits) == 3 and {h.id for h in hits} <= shortlist
    probs = match(blip, [h.path for h in hits], [text])[:, 0].tolist()
    assert [h.score for h in hits] == pytest.approx(probs, abs=1e-5)
    assert [h.score for h in hits] == sorted(probs, reverse=True)
    assert all("search_score" in h.meta for h in hits)
    with pytest.raises(ClipBlipError, match="text query"):
        query(idx, clip, image=str(shapes / "0001.png"), blip=blip)


def test_update_embeds_only_new_and_changed_files_and_drops_vanished_ones(shapes, tmp_path, clip):
    out = tmp_path / "ix"
    build(shapes, out, "shapes-clip")
    again = build(shapes, out, "shapes-clip")
    assert (again.embedded, again.unchanged, again.version) == (0, 20, 1)  # nothing to do: no new version
    before = {row[1]: row[0] for row in rows(out)}
    # a file replaced by another picture keeps its id; a removed one leaves; new ones get fresh ids
    changed = shapes / "0003.png"
    write_shapes(tmp_path / "other", 50, 51)[0].replace(changed)
    (shapes / "0005.png").unlink()
    write_shapes(shapes, 20, 22)
    r = build(shapes, out, "shapes-clip")
    assert (r.embedded, r.unchanged, r.removed, r.count, r.version) == (3, 18, 1, 21, 2)
    after = {row[1]: row[0] for row in rows(out)}
    assert after[str(changed.absolute())] == before[str(changed.absolute())]
    assert str((shapes / "0005.png").absolute()) not in after
    assert sorted(after[str((shapes / f"{i:04d}.png").absolute())] for i in (20, 21)) == [20, 21]
    idx = Index.open(out)
    hit = idx.search(_vec(clip, changed)[None], 1)[0][0]
    assert hit.id == before[str(changed.absolute())] and hit.score == pytest.approx(1, abs=1e-4)
    assert hit.meta["hash"] == sha256(changed)


def test_add_appends_without_removing_and_uses_the_index_model(shapes, tmp_path, clip):
    out = tmp_path / "ix"
    build(shapes, out, "shapes-clip")
    extra = tmp_path / "extra"
    write_shapes(extra, 30, 35)
    r = add_to(out, extra)
    assert (r.embedded, r.count, r.removed) == (5, 25, 0)
    texts = tmp_path / "texts.txt"
    texts.write_text("a red circle\n\na blue square\na red circle\n")
    r = add_to(out, None, texts=texts)
    assert (r.embedded, r.count) == (2, 27)  # blank and repeated lines are one item each
    idx = Index.open(out)
    from clipblip.tasks.inputs import text_features

    hit = idx.search(text_features(clip, ["a blue square"]).numpy(), 1)[0][0]
    assert (hit.caption, hit.path, hit.meta["kind"]) == ("a blue square", None, "text")
    assert hit.score == pytest.approx(1, abs=1e-4)
    with pytest.raises(ClipBlipError, match="not an index"):
        add_to(tmp_path / "nothing", extra)
    assert not (tmp_path / "nothing").exists()


def test_dataset_captions_and_fields_land_in_the_metadata(tmp_path, clip):
    paths = write_shapes(tmp_path / "imgs", 0, 4, captions=False)
    lines = [{"image": f"imgs/{p.name}", "caption": f"caption {i}", "source": "unit"} for i, p in enumerate(paths)]
    lines.append({"image": "imgs/missing.png", "caption": "gone"})
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    r = build(tmp_path / "data.jsonl", tmp_path / "ix", "shapes-clip")
    assert r.count == 4 and [i.endswith("missing.png") for i, _ in r.skipped.items] == [True]
    hit = Index.open(tmp_path / "ix").search(_vec(clip, paths[2])[None], 1)[0][0]
    assert (hit.caption, hit.meta["source"], hit.meta["record"]) == ("caption 2", "unit", "2")


def test_names_and_captions_that_are_not_utf8_are_skipped_and_reported(tmp_path, clip):
    """A file name with byte 0xff reaches Python with a lone surrogate, as does a JSON caption "\\udcff"; SQLite
    refused both with a UnicodeEncodeError that ended the build."""
    import os

    folder = tmp_path / "imgs"
    good = write_shapes(folder, 0, 3, captions=False)
    bad = folder / os.fsdecode(b"scene\xff.png")
    good[0].rename(bad)
    r = build(folder, tmp_path / "ix", "shapes-clip")
    assert r.count == 2 and [(i.endswith("scene\\udcff.png"), "not valid UTF-8" in why) for i, why in r.skipped.items] \
        == [(True, True)]
    lines = [{"image": f"imgs/{good[1].name}", "caption": "a \udcff"},
             {"image": f"imgs/{good[2].name}", "caption": "a circle"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    r = build(tmp_path / "data.jsonl", tmp_path / "ix2", "shapes-clip")
    assert r.count == 1 and [i.endswith(good[1].name) for i, _ in r.skipped.items] == [True]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_every_kind_searches_and_deletes(tmp_path, clip, kind):
    folder = tmp_path / "images"
    paths = write_shapes(folder, 0, 24)
    r = build(folder, tmp_path / "ix", "shapes-clip", kind=kind)
    assert r.kind == kind
    vecs = _vec(clip, paths)
    idx = Index.open(tmp_path / "ix")
    assert [h[0].id for h in idx.search(vecs, 1)] == list(range(24))
    report, missing = delete(tmp_path / "ix", [4, 999])
    assert missing == [999] and (report.count, report.removed, report.kind) == (23, 1, kind)
    hits = idx.search(vecs, 2)  # the open index follows the new version
    assert len(idx) == 23 and all(h.id != 4 for row in hits for h in row)
    assert [row[0].id for i, row in enumerate(hits) if i != 4] == [i for i in range(24) if i != 4]


def test_auto_kind_switches_to_ivf_above_the_threshold(tmp_path, clip, monkeypatch):
    monkeypatch.setattr(kinds, "FLAT_MAX", 16)
    folder = tmp_path / "images"
    paths = write_shapes(folder, 0, 12)
    assert build(folder, tmp_path / "ix", "shapes-clip").kind == "flat"
    paths += write_shapes(folder, 12, 20)
    r = build(folder, tmp_path / "ix", "shapes-clip")
    assert (r.kind, r.count) == ("ivf", 20)  # rebuilt from the stored vectors: only 8 were embedded
    assert r.embedded == 8
    hits = Index.open(tmp_path / "ix").search(_vec(clip, paths), 1)
    assert [h[0].path for h in hits] == [str(p.absolute()) for p in paths]


def test_ivfpq_finds_its_own_vectors_and_needs_enough_to_train(tmp_path, shapes):
    x = np.random.default_rng(0).standard_normal((3000, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = kinds.make("ivfpq", 128, x)
    index.add_with_ids(x, np.arange(3000) + 100)
    assert kinds.kind_of(index) == "ivfpq"
    assert np.mean(index.search(x[:500], 1)[1][:, 0] == np.arange(500) + 100) > 0.95
    with pytest.raises(ClipBlipError, match="at least 256 vectors"):  # 20 images: too few for PQ's centroids
        build(shapes, tmp_path / "ix", "shapes-clip", kind="ivfpq")


def test_choose():
    assert kinds.choose(kinds.FLAT_MAX, 512) == "flat"
    assert kinds.choose(kinds.FLAT_MAX + 1, 512, memory_bytes=2**40) == "ivf"
    assert kinds.choose(10**8, 512, memory_bytes=64 * 2**30) == "ivfpq"  # 200 GB of floats
    assert kinds.nlist(10**6) == 1024 and kinds.nlist(100) == 16


def test_search_checks_its_input(shapes, tmp_path):
    build(shapes, tmp_path / "ix", "shapes-clip")
    idx = Index.open(tmp_path / "ix")
    with pytest.raises(ClipBlipError, match=r"\[n, 128\]"):
        idx.search(np.zeros((1, 64), np.float32), 3)
    assert len(idx.search(np.ones(128, np.float32) / np.sqrt(128), 50)[0]) == 20  # k > count: all of them
    with pytest.raises(ClipBlipError, match="built with shapes-clip"):
        build(shapes, tmp_path / "ix", "shapes-blip")
