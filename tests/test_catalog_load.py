"""A catalog name loads end to end from a directory laid out like the Hugging Face cache, with no network."""

import json

import pytest
import torch
from safetensors.torch import save_file

import clipblip
from clip_refs import OPEN_CLIP_TEXT, OPEN_CLIP_VIT, max_diff, open_clip_config, open_clip_model, token_ids
from clipblip import ClipBlipError, catalog

TINY_ARCH = {"embed_dim": 16, "quick_gelu": True, "vision_cfg": OPEN_CLIP_VIT, "text_cfg": OPEN_CLIP_TEXT}


@pytest.fixture
def tiny_entry(monkeypatch, tmp_path):
    entry = catalog.Entry(name="tiny/test", family="clip", arch="tiny-quickgelu", hub_id="someorg/tiny-clip",
                          files=("open_clip_model.safetensors", "open_clip_config.json"), format="open_clip",
                          preprocess={"size": 32, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5],
                                      "interpolation": "bicubic", "resize": "shortest"})
    monkeypatch.setitem(catalog.ARCHS, entry.arch, TINY_ARCH)
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return entry


def _cache(tmp_path, model):
    repo = tmp_path / "hub" / "models--someorg--tiny-clip"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "open_clip_model.safetensors"))
    (snap / "open_clip_config.json").write_text(json.dumps(open_clip_config(OPEN_CLIP_VIT, True)))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")


def test_catalog_name_from_the_hf_cache(tiny_entry, tmp_path):
    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=True)
    _cache(tmp_path, ref)
    model = clipblip.load("tiny/test")
    assert model.config.image.mean == (0.1, 0.2, 0.3)  # the catalog's preprocessing
    pixels, ids = torch.randn(2, 3, 32, 32), token_ids()
    with torch.no_grad():
        assert max_diff(ref.encode_image(pixels), model.encode_image(pixels)) <= 1e-4
        assert max_diff(ref.encode_text(ids), model.encode_text(ids)) <= 1e-4


def test_catalog_name_offline_and_not_cached(tiny_entry):
    with pytest.raises(ClipBlipError, match=r"someorg/tiny-clip.*clipblip\.load\('/path/to/open_clip_model"):
        clipblip.load("tiny/test")


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ClipBlipError, match="ViT-B-32/openai"):
        clipblip.load("ViT-B-32/opena")


def test_blip_catalog_name_from_the_hf_cache(monkeypatch, tmp_path):
    from blip_refs import hf_blip, pixels

    hf = hf_blip("caption")
    entry = catalog.Entry(name="tiny/blip", family="blip", arch="tiny-blip", hub_id="someorg/tiny-blip",
                          files=("model.safetensors", "config.json"), format="hf_blip",
                          preprocess={"size": 32, "resize": "squash"})
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = tmp_path / "hub" / "models--someorg--tiny-blip" / "snapshots" / "abc"
    hf.save_pretrained(snap)
    model = clipblip.load("tiny/blip")
    assert model.config.parts == ("decoder",)
    ids = torch.tensor([[30522, 2000, 2001]])
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values=pixels(1)).logits
        ours = model.lm_logits(ids, model.image_kv(model.image_tokens(pixels(1)), "decoder"))
    assert max_diff(ref, ours) <= 1e-4


def test_cli_unwritable_output_is_one_line(tiny_clip_dir, tmp_path, capsys):
    from clipblip.cli import main

    (tmp_path / "file").write_text("x")
    code = main(["embed", "-m", str(tiny_clip_dir), "--texts", "a", "-o", str(tmp_path / "file" / "out.npy")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("clipblip: error:") and err.count("\n") == 1
