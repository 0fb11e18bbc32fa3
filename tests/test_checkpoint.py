"""Loading is strict and every failure is a ClipBlipError that names the file and what to do."""

import json

import pytest
import torch
from safetensors.torch import save_file

import clipblip
from clip_refs import OPEN_CLIP_VIT, hf_clip, open_clip_model
from clipblip import ClipBlipError


def _hf_dir(tmp_path):
    hf_clip().save_pretrained(tmp_path)
    return tmp_path


def _resave(directory, edit):
    from safetensors.torch import load_file

    sd = load_file(str(directory / "model.safetensors"))
    edit(sd)
    save_file(sd, str(directory / "model.safetensors"))


def test_missing_key_is_named(tmp_path):
    d = _hf_dir(tmp_path)
    _resave(d, lambda sd: sd.pop("text_model.final_layer_norm.weight"))
    with pytest.raises(ClipBlipError, match=r"missing \(1\): text\.norm\.weight"):
        clipblip.load(d)


def test_unexpected_key_is_named(tmp_path):
    d = _hf_dir(tmp_path)
    _resave(d, lambda sd: sd.__setitem__("vision_model.extra.weight", torch.zeros(2)))
    with pytest.raises(ClipBlipError, match=r"unexpected \(1\): vision_model\.extra\.weight"):
        clipblip.load(d)


def test_wrong_shape_is_named(tmp_path):
    d = _hf_dir(tmp_path)
    _resave(d, lambda sd: sd.__setitem__("text_projection.weight", torch.zeros(8, 32)))
    with pytest.raises(ClipBlipError, match=r"wrong shape .*text\.proj\.weight"):
        clipblip.load(d)


def test_open_clip_file_without_config_asks_for_arch(tmp_path):
    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ClipBlipError, match="arch="):
        clipblip.load(tmp_path / "weights.safetensors")


def test_arch_that_does_not_match_the_weights(tmp_path, monkeypatch):
    from clipblip import catalog

    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    wrong = {"embed_dim": 16, "vision_cfg": {**OPEN_CLIP_VIT, "layers": 3},
             "text_cfg": {"width": 32, "heads": 4, "layers": 2}}
    monkeypatch.setitem(catalog.ARCHS, "tiny-wrong", wrong)
    with pytest.raises(ClipBlipError, match=r"vision\.layers: config 3 vs weights 2"):
        clipblip.load(tmp_path / "weights.safetensors", arch="tiny-wrong")


def test_arch_names_a_known_config(tmp_path, monkeypatch):
    from clipblip import catalog

    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    tiny = {"embed_dim": 16, "vision_cfg": OPEN_CLIP_VIT, "text_cfg": {"width": 32, "heads": 4, "layers": 2}}
    monkeypatch.setitem(catalog.ARCHS, "tiny", tiny)
    assert clipblip.load(tmp_path / "weights.safetensors", arch="tiny").config.vision.act == "gelu"
    with pytest.raises(ClipBlipError, match="unknown architecture"):
        clipblip.load(tmp_path / "weights.safetensors", arch="no-such-arch")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_damaged_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(ClipBlipError, match="broken.pt"):
        clipblip.load(path)


def test_unknown_layout(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.bin")
    with pytest.raises(ClipBlipError, match="unknown checkpoint layout"):
        clipblip.load(tmp_path / "other.bin")


def test_wrong_family_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ClipBlipError, match="model_type='bert'"):
        clipblip.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"family": "dalle"}))
    with pytest.raises(ClipBlipError, match="family 'dalle'"):
        clipblip.load(tmp_path)


def test_hf_weights_file_alone_points_at_the_directory(tmp_path):
    d = _hf_dir(tmp_path)
    with pytest.raises(ClipBlipError, match="pass the directory"):
        clipblip.load(d / "model.safetensors")


def test_empty_directory(tmp_path):
    with pytest.raises(ClipBlipError, match="not a checkpoint directory"):
        clipblip.load(tmp_path)


def test_text_without_end_token(tmp_path):
    model = clipblip.load(_hf_dir(tmp_path))
    with pytest.raises(ClipBlipError, match="no end-of-text"):
        model.encode_text(torch.tensor([[49406, 320, 321]]))
