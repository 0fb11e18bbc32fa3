"""Parity with open_clip's own CLIP (random init) through every file layout it and OpenAI use: OpenAI's plain
.pt state dict, OpenAI's TorchScript archive, open_clip's .safetensors/.bin with its config, and the wrapped
training checkpoint. ViT and ModifiedResNet towers, QuickGELU and GELU."""

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

import clipblip
from clip_refs import OPEN_CLIP_RESNET, OPEN_CLIP_VIT, max_diff, open_clip_config, open_clip_model, token_ids

TOL = 1e-4
TOWERS = {"vit": OPEN_CLIP_VIT, "resnet": OPEN_CLIP_RESNET}


def _compare(ours, ref):
    size = ours.config.vision.image_size
    pixels = torch.randn(2, 3, size, size)
    ids = token_ids()
    with torch.no_grad():
        assert max_diff(ref.encode_image(pixels), ours.encode_image(pixels)) <= TOL
        assert max_diff(ref.encode_text(ids), ours.encode_text(ids)) <= TOL
        image_f, text_f, scale = ref(pixels, ids)[:3]
        assert max_diff(scale * image_f @ text_f.t(), ours(pixels, ids)[0]) <= TOL


def _write_open_clip(directory, sd, vision, quick_gelu, name="open_clip_model.safetensors"):
    directory.mkdir(exist_ok=True)
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in sd.items()}, str(directory / name))
    else:
        torch.save(sd, directory / name)
    (directory / "open_clip_config.json").write_text(json.dumps(open_clip_config(vision, quick_gelu)))
    return directory / name


@pytest.mark.parametrize("tower", ["vit", "resnet"])
@pytest.mark.parametrize("quick_gelu", [True, False])
@pytest.mark.parametrize("name", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_open_clip_files(tmp_path, tower, quick_gelu, name):
    ref = open_clip_model(TOWERS[tower], quick_gelu)
    path = _write_open_clip(tmp_path / "snap", ref.state_dict(), TOWERS[tower], quick_gelu, name)
    for source in (path, path.parent):  # the file (config found beside it) and the hub-snapshot directory
        model = clipblip.load(source)
        assert model.config.vision.act == ("quick_gelu" if quick_gelu else "gelu")
        assert model.config.image.mean == (0.5, 0.5, 0.5)
        _compare(model, ref)


def test_wrapped_training_checkpoint(tmp_path):
    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=False)
    wrapped = {"epoch": 3, "name": "run", "state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}
    path = _write_open_clip(tmp_path, wrapped, OPEN_CLIP_VIT, False, name="epoch_3.pt")
    _compare(clipblip.load(path), ref)


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_openai_plain_state_dict(tmp_path, tower, monkeypatch):
    ref = open_clip_model(TOWERS[tower], quick_gelu=True)
    torch.save(ref.state_dict(), tmp_path / "model.pt")
    # OpenAI's rule infers heads as width // 64; the tiny test towers use 8-wide heads, so widen the rule here.
    from clipblip.convert import openai

    real = openai.infer_config
    monkeypatch.setattr(openai, "infer_config", lambda sd, **kw: real(sd, **{
        "text_heads": 4, "vision_heads": 4 if tower == "vit" else 32, **kw}))
    model = clipblip.load(tmp_path / "model.pt")
    assert model.config.vision.act == "quick_gelu" and model.config.vision.arch == tower
    _compare(model, ref)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_openai_torchscript_archive(tmp_path, monkeypatch):
    ref = open_clip_model(OPEN_CLIP_VIT, quick_gelu=True)
    pixels, ids = torch.randn(1, 3, 32, 32), token_ids()[:1]
    archived = copy.deepcopy(ref)
    # OpenAI's archives carry these three as tensors beside the weights
    for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        archived.__dict__.pop(name, None)  # open_clip keeps two of them as plain ints
        archived.register_buffer(name, torch.tensor(value))
    traced = torch.jit.trace(archived, (pixels, ids), check_trace=False, strict=False)
    assert "input_resolution" in traced.state_dict()
    traced.save(str(tmp_path / "ViT-tiny.pt"))
    from clipblip.convert import openai

    real = openai.infer_config
    monkeypatch.setattr(openai, "infer_config", lambda sd, **kw: real(sd, **{"text_heads": 4, "vision_heads": 4, **kw}))
    _compare(clipblip.load(tmp_path / "ViT-tiny.pt"), ref)
