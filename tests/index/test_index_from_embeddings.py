"""`clipblip index build EMB_FOLDER`: an index made from the vectors `clipblip embed --format npy|parquet` wrote,
with nothing embedded again, that searches as an index built from the images does; a folder that is unfinished,
damaged or made by another model is a one-line error."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from index_helpers import write_shapes

from clipblip.cli import EXIT_ERROR, EXIT_PARTIAL, main
from clipblip.index import Index, build
from clipblip.tasks.inputs import image_features, text_features


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _embed(capsys, images, out, fmt="npy"):
    code, _, err = run(capsys, "embed", "--images", images, "-o", out, "--format", fmt, "--shard-size", 7)
    assert code in (0, EXIT_PARTIAL), err
    return out


def _no_model(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("an index built from embeddings loaded a model")

    monkeypatch.setattr("clipblip.loading.load", load)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_an_index_from_embeddings_searches_as_one_built_from_the_images(shapes, clip, tmp_path, capsys, monkeypatch,
                                                                          fmt):
    direct = build(shapes, tmp_path / "direct", "shapes-clip")
    emb = _embed(capsys, shapes, tmp_path / "emb", fmt)
    _no_model(monkeypatch)
    code, out, err = run(capsys, "index", "build", emb, "--out", tmp_path / "from-emb", "--json")
    report = json.loads(out)
    assert code == EXIT_PARTIAL and "broken.png" in err  # what the embedding run skipped is listed again
    assert (report["count"], report["given"], report["embedded"]) == (direct.count, 20, 0)
    a, b = Index.open(tmp_path / "direct"), Index.open(tmp_path / "from-emb")
    assert (b.model, b.dim, len(b)) == (a.model, a.dim, len(a)) == ("shapes-clip", 128, 20)
    queries = torch.cat([text_features(clip, ["a red circle.", "two blue squares.", "a large green star."]),
                         image_features(clip, [shapes / "0003.png", shapes / "0011.png"])[0]]).numpy()
    for hits_a, hits_b in zip(a.search(queries, 8), b.search(queries, 8)):
        assert [(h.id, h.path, h.caption) for h in hits_b] == [(h.id, h.path, h.caption) for h in hits_a]
        assert np.allclose([h.score for h in hits_b], [h.score for h in hits_a], atol=1e-5)
    assert all(h.caption for h in b.search(queries, 20)[0])  # the sidecar captions came through the metadata
    # run again: the index already holds every vector
    code, out, _ = run(capsys, "index", "build", emb, "--out", tmp_path / "from-emb", "--json")
    assert (json.loads(out)["unchanged"], json.loads(out)["given"]) == (20, 0)


def test_index_add_takes_an_embeddings_folder_of_the_index_model(shapes, clip, tmp_path, capsys):
    more = tmp_path / "more"
    write_shapes(more, 20, 26)
    build(shapes, tmp_path / "ix", "shapes-clip")
    emb = _embed(capsys, more, tmp_path / "emb")
    code, out, _ = run(capsys, "index", "add", tmp_path / "ix", emb, "--json")
    assert code == 0 and (json.loads(out)["count"], json.loads(out)["given"]) == (26, 6)
    hit = Index.open(tmp_path / "ix").search(image_features(clip, [more / "0022.png"])[0].numpy(), 1)[0][0]
    assert hit.path == str((more / "0022.png").absolute()) and hit.id == 22


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _unfinished(emb: Path, _):
    manifest = json.loads((emb / "embed.json").read_text())
    (emb / "embed.json").write_text(json.dumps({**manifest, "complete": False}))


def _row_dropped(emb: Path, _):
    table = pq.read_table(emb / "metadata.parquet")
    pq.write_table(table.slice(1), emb / "metadata.parquet")


def _pickled_shard(emb: Path, marker: Path):
    np.save(emb / "img_emb" / "img_emb_0001.npy", np.array([_RunsCommand(marker)], dtype=object), allow_pickle=True)


def _manifest_garbage(emb: Path, _):
    (emb / "embed.json").write_text(json.dumps({"format": "npy", "dim": -1}))


def _metadata_bomb(emb: Path, _):
    """The right rows, one caption of 4 MB that zstd packs into a few KB: refused from the file's footer."""
    table = pq.read_table(emb / "metadata.parquet")
    captions = ["x" * (4 << 20)] + table.column("caption").to_pylist()[1:]
    table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(captions, pa.string()))
    pq.write_table(table, emb / "metadata.parquet", compression="zstd")
    assert (emb / "metadata.parquet").stat().st_size < 1 << 20


def _shard_gone(emb: Path, _):
    (emb / "img_emb" / "img_emb_0002.npy").unlink()


@pytest.mark.parametrize("damage, says", [
    (_unfinished, "did not finish"), (_row_dropped, "does not match its 7 rows"), (_pickled_shard, "cannot be read"),
    (_manifest_garbage, "not a manifest clipblip embed wrote"), (_shard_gone, "img_emb_0002.npy is missing"),
    (_metadata_bomb, "unpacks to more than")])
def test_a_damaged_or_unfinished_folder_is_a_one_line_error(shapes, tmp_path_factory, tmp_path, capsys, damage, says):
    made = tmp_path_factory.getbasetemp() / "emb-to-damage"
    if not made.exists():
        _embed(capsys, shapes, made)
    emb = tmp_path / "emb"
    shutil.copytree(made, emb)
    damage(emb, tmp_path / "marker")
    code, _, err = run(capsys, "index", "build", emb, "--out", tmp_path / "ix")
    assert code == EXIT_ERROR and err.startswith("clipblip: error:") and err.count("\n") == 1, err
    assert says in err and not (tmp_path / "ix").exists() and not (tmp_path / "marker").exists()


def test_another_model_or_texts_with_an_embeddings_folder_is_a_one_line_error(shapes, tmp_path, capsys):
    emb = _embed(capsys, shapes, tmp_path / "emb")
    (tmp_path / "texts.txt").write_text("a red circle\n")
    for extra, says in ((["-m", "shapes-blip"], "was embedded with shapes-clip, not shapes-blip"),
                        (["--texts", tmp_path / "texts.txt"], "index add INDEX --texts FILE")):
        code, _, err = run(capsys, "index", "build", emb, "--out", tmp_path / "ix", *extra)
        assert code == EXIT_ERROR and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "ix").exists()
