"""`clipblip embed --format npy|parquet`: numbered shards of a fixed size with their metadata (clip-retrieval's
layout), every row the vector of the input its metadata names, a bad image skipped without moving other rows, and a
killed run resumed shard by shard to the bytes an uninterrupted run writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import clipblip
from clipblip.cli import EXIT_ERROR, EXIT_PARTIAL, main
from clipblip.tasks.inputs import image_features, text_features

COLORS = ["red", "bad", "blue", "green", "yellow", "white", "black", "orange"]
TEXTS = ["a red circle", "two blue squares"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Eight inputs, the second a corrupt PNG; with --shard-size 3 the shards are [0, 2], [3, 4, 5], [6, 7]."""
    d = tmp_path_factory.mktemp("embed_images")
    for i, c in enumerate(COLORS):
        path = d / f"{i:02d}_{c}.png"
        if c == "bad":
            path.write_bytes(b"\x89PNG not really")
            continue
        Image.new("RGB", (30 + 5 * i, 40), c).save(path)
        if i % 2 == 0:
            path.with_suffix(".txt").write_text(f"\n  a {c} picture\nsecond line\n")
    return d


def _embed(capsys, folder, out, *extra, fmt="npy", model=None):
    code = main(["embed", "--images", str(folder), "--texts", *TEXTS, "-o", str(out), "--format", fmt,
                 "--shard-size", "3", "-m", str(model), "--json", *map(str, extra)])
    out_text, err = capsys.readouterr()
    return code, (json.loads(out_text) if out_text.strip() else None), err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_npy_shards_hold_each_input_at_the_row_its_metadata_names(tiny_clip_dir, folder, tmp_path, capsys):
    out = tmp_path / "emb"
    code, report, err = _embed(capsys, folder, out, model=tiny_clip_dir)
    assert code == EXIT_PARTIAL and [s["item"] for s in report["skipped"]] == [str(folder / "01_bad.png")]
    assert "01_bad.png" in err
    assert report["rows"] == {"image": 7, "text": 2} and report["shards"] == {"image": 3, "text": 1}
    assert sorted(p.name for p in (out / "img_emb").iterdir()) == [f"img_emb_{i:04d}.npy" for i in range(3)]
    assert [p.name for p in (out / "text_emb").iterdir()] == ["text_emb_0000.npy"]
    meta = pq.read_table(out / "metadata.parquet").to_pylist()
    images = [r for r in meta if r["kind"] == "image"]
    # the bad image drops its own row; the next shards start at inputs 3 and 6 all the same
    assert [[Path(r["path"]).name[:2] for r in images if r["shard"] == s] for s in range(3)] == [
        ["00", "02"], ["03", "04", "05"], ["06", "07"]]
    assert [r["row"] for r in images] == [0, 1, 0, 1, 2, 0, 1]
    assert {Path(r["path"]).name: r["caption"] for r in images if r["caption"]} == {
        "00_red.png": "a red picture", "02_blue.png": "a blue picture", "04_yellow.png": "a yellow picture",
        "06_black.png": "a black picture"}
    model = clipblip.load(tiny_clip_dir)
    shards = [np.load(out / "img_emb" / f"img_emb_{s:04d}.npy") for s in range(3)]
    for r in images:
        alone = image_features(model, [r["path"]])[0][0].numpy()
        assert np.allclose(shards[r["shard"]][r["row"]], alone, atol=1e-5), r["path"]
    texts = [r for r in meta if r["kind"] == "text"]
    assert [(r["text"], r["shard"], r["row"], r["path"]) for r in texts] == [(t, 0, i, None) for i, t in
                                                                            enumerate(TEXTS)]
    assert np.allclose(np.load(out / "text_emb" / "text_emb_0000.npy"), text_features(model, TEXTS), atol=1e-5)
    manifest = json.loads((out / "embed.json").read_text())
    assert {k: manifest[k] for k in ("model", "dim", "dtype", "normalized", "shard_size", "complete")} == {
        "model": str(Path(tiny_clip_dir).resolve()), "dim": 16, "dtype": "float32", "normalized": True,
        "shard_size": 3, "complete": True}
    assert sorted(manifest["done"]["image"]) == ["0", "1", "2"] and manifest["done"]["text"] == {
        "0": {"rows": 2, "skipped": []}}


def test_parquet_shards_hold_the_same_vectors_and_metadata(tiny_clip_dir, folder, tmp_path, capsys):
    assert _embed(capsys, folder, tmp_path / "npy", model=tiny_clip_dir)[0] == EXIT_PARTIAL
    code, report, _ = _embed(capsys, folder, tmp_path / "pq", fmt="parquet", model=tiny_clip_dir)
    assert code == EXIT_PARTIAL and report["format"] == "parquet"
    assert not (tmp_path / "pq" / "metadata.parquet").exists()  # each shard carries its metadata
    meta = pq.read_table(tmp_path / "npy" / "metadata.parquet").to_pylist()
    for kind, prefix, shards in (("image", "img_emb", 3), ("text", "text_emb", 1)):
        for s in range(shards):
            table = pq.read_table(tmp_path / "pq" / prefix / f"{prefix}_{s:04d}.parquet")
            vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
            assert np.array_equal(vectors, np.load(tmp_path / "npy" / prefix / f"{prefix}_{s:04d}.npy"))
            assert table.drop_columns(["embedding"]).to_pylist() == [
                r for r in meta if (r["kind"], r["shard"]) == (kind, s)]


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_a_killed_run_resumes_only_the_missing_shards_to_the_same_bytes(tiny_clip_dir, folder, tmp_path, capsys,
                                                                        monkeypatch, fmt):
    assert _embed(capsys, folder, tmp_path / "whole", fmt=fmt, model=tiny_clip_dir)[0] == EXIT_PARTIAL
    calls = []

    def spy(model, items, *args, **kwargs):
        calls.append([Path(p).name[:2] for p in items])
        if len(calls) == stop_at:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill between shards
        return image_features(model, items, *args, **kwargs)

    monkeypatch.setattr("clipblip.data.embeddings.image_features", spy)
    out = tmp_path / "resumed"
    stop_at = 2
    assert _embed(capsys, folder, out, fmt=fmt, model=tiny_clip_dir)[0] == 130
    assert json.loads((out / "embed.json").read_text())["complete"] is False
    calls.clear()
    stop_at = 0
    code, report, err = _embed(capsys, folder, out, fmt=fmt, model=tiny_clip_dir)
    assert code == EXIT_PARTIAL and calls == [["03", "04", "05"], ["06", "07"]]
    assert (report["embedded_shards"], report["reused_shards"]) == (3, 1)  # two image shards and the text one
    assert [s["item"] for s in report["skipped"]] == [str(folder / "01_bad.png")]  # listed by the first run
    assert _files(out) == _files(tmp_path / "whole")
    # a shard file lost after the run is made again, alone
    (out / "img_emb" / f"img_emb_0001.{fmt}").unlink()
    calls.clear()
    code, report, _ = _embed(capsys, folder, out, fmt=fmt, model=tiny_clip_dir)
    assert code == EXIT_PARTIAL and calls == [["03", "04", "05"]] and report["reused_shards"] == 3
    assert _files(out) == _files(tmp_path / "whole")


def test_a_rerun_with_other_inputs_model_or_shard_size_is_a_one_line_error(tiny_clip_dir, folder, tmp_path, capsys):
    out = tmp_path / "emb"
    assert _embed(capsys, folder, out, model=tiny_clip_dir)[0] == EXIT_PARTIAL
    before = _files(out)
    reruns = {"other inputs": ["--texts-file", tmp_path / "more.txt"], "made with": ["-m", "shapes-clip"],
              "shard_size 3, not 2": ["--shard-size", "2"]}
    (tmp_path / "more.txt").write_text("a third text\n")
    for says, extra in reruns.items():
        code = main(["embed", "--images", str(folder), "--texts", *TEXTS, "-o", str(out), "--format", "npy",
                     "--shard-size", "3", "-m", str(tiny_clip_dir), *map(str, extra)])
        err = capsys.readouterr().err
        assert code == EXIT_ERROR and err.startswith("clipblip: error:") and err.count("\n") == 1, err
        assert says in err and "give another --output" in err
    assert _files(out) == before


@pytest.mark.parametrize("output, fmt, says", [("emb.npy", "npy", "writes a folder"),
                                               ("emb.npy", "safetensors", "must end in .safetensors"),
                                               ("full", "parquet", "not empty")])
def test_an_output_that_cannot_take_the_format_is_a_one_line_error(tiny_clip_dir, tmp_path, capsys, output, fmt,
                                                                   says):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("someone's file")
    code = main(["embed", "--texts", "x", "-o", str(tmp_path / output), "--format", fmt, "-m", str(tiny_clip_dir)])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and says in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["full", "notes.txt"]


def test_without_pyarrow_the_folder_formats_name_the_parquet_extra(tiny_clip_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails as when it is not installed
    code = main(["embed", "--texts", "x", "-o", str(tmp_path / "emb"), "--format", "npy", "-m", str(tiny_clip_dir)])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and err.count("\n") == 1 and "pip install 'clipblip[parquet]'" in err, err
    assert not (tmp_path / "emb").exists()


def test_a_file_name_that_is_not_utf8_is_skipped_and_listed_not_a_crash(tiny_clip_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (20, 20), "red").save(images / "a.png")
    try:
        Image.new("RGB", (20, 20), "blue").save(os.fsdecode(bytes(images) + b"/b\xff.png"), format="PNG")
    except OSError:
        pytest.skip("this filesystem takes only UTF-8 names")
    # in a process of its own: its stderr escapes what is not UTF-8, as a terminal's does (capsys's would raise)
    done = subprocess.run([sys.executable, "-m", "clipblip.cli", "embed", "--images", images, "--texts",
                           b"a red \xff circle", "-o", tmp_path / "emb", "--format", "parquet", "-m", tiny_clip_dir,
                           "--json"], capture_output=True, timeout=300)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == EXIT_PARTIAL and "not UTF-8" in err and "Traceback" not in err, err
    assert [s["item"] for s in json.loads(done.stdout)["skipped"]] == [os.fsdecode(bytes(images) + b"/b\xff.png")]
    assert [r["path"] for r in pq.read_table(tmp_path / "emb" / "img_emb").to_pylist()] == [str(images / "a.png")]
    assert pq.read_table(tmp_path / "emb" / "text_emb").column("text").to_pylist() == ["a red \ufffd circle"]
