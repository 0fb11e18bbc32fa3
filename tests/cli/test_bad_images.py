"""Batch jobs over a folder with a good image, a corrupt file and a 1x200000 strip: the strip is preprocessed (cropped
before it is resized, at bounded cost), the corrupt file is skipped and listed by its path, the rest is finished."""

import json

import pytest
from PIL import Image
from safetensors import safe_open

from clipblip.cli import EXIT_PARTIAL, main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_images")
    Image.new("RGB", (40, 30), "red").save(d / "good.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    Image.new("L", (1, 200_000), 128).save(d / "strip.png")  # 1x200000: 224 x 44.8M pixels if resized first
    return d


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


@pytest.mark.parametrize("fast", [False, True])
def test_classify_finishes_the_good_images_and_lists_the_corrupt_one(tiny_clip_dir, folder, capsys, fast):
    code, report, err = _run(capsys, "classify", folder, "--labels", "red", "gray", "-m", tiny_clip_dir, "--json",
                             *(["--fast"] if fast else []))
    assert code == EXIT_PARTIAL
    assert sorted(r["image"] for r in report["results"]) == [str(folder / "good.png"), str(folder / "strip.png")]
    assert [s["item"] for s in report["skipped"]] == [str(folder / "corrupt.jpg")]
    assert f"skipped {folder / 'corrupt.jpg'}: " in err and "PIL image" not in err


def test_embed_finishes_the_good_images_and_lists_the_corrupt_one(tiny_clip_dir, folder, tmp_path, capsys):
    out = tmp_path / "emb.safetensors"
    code, report, err = _run(capsys, "embed", "--images", folder, "-o", out, "-m", tiny_clip_dir, "--json")
    assert code == EXIT_PARTIAL and [s["item"] for s in report["skipped"]] == [str(folder / "corrupt.jpg")]
    with safe_open(str(out), "pt") as f:
        assert f.get_tensor("image_features").shape == (2, 16)
        assert json.loads(f.metadata()["images"]) == [str(folder / "good.png"), str(folder / "strip.png")]
