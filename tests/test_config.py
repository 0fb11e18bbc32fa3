"""A config.json is user input: a hostile one fails in one line that names the field, before any model is built."""

import dataclasses
import json

import pytest
import torch

import clipblip
from clipblip import ClipBlipError, catalog
from clipblip import config as C
from clipblip.checkpoint import build
from clipblip.convert import open_clip as oc_convert


@pytest.fixture
def no_model_built(monkeypatch):
    """Building a model fails the test: every refusal must come before it (a hostile size would take minutes)."""
    from clipblip import models

    def refuse(self, cfg):
        pytest.fail(f"a model was built from {cfg!r:.80}")

    monkeypatch.setattr(models.CLIP, "__init__", refuse)
    monkeypatch.setattr(models.BLIP, "__init__", refuse)


def _load(tmp_path, data):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps(data))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))  # weights are read before the build
    with pytest.raises(ClipBlipError) as info:
        clipblip.load(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "config.json" in message
    return message


@pytest.mark.parametrize("data, field", [
    ([], "JSON object"),
    ({"family": "clip", "vision": "big"}, "config field vision: expected a group"),
    ({"family": "clip", "vision": {"width": "wide"}}, "config field vision.width: expected int, got str"),
    ({"family": "clip", "vision": {"width": True}}, "config field vision.width: expected int, got bool"),
    ({"family": "clip", "vision": {"width": -8}}, r"config field vision.width: -8 is outside \[1, "),
    ({"family": "clip", "text": {"vocab_size": 2**40}}, "config field text.vocab_size: 1099511627776 is outside"),
    ({"family": "clip", "text": {"layers": 1_000_000}}, "config field text.layers: 1000000 is outside"),
    ({"family": "clip", "vision": {"arch": "resnet", "layers": [3, 4]}}, "config field vision.layers: a ResNet"),
    ({"family": "clip", "vision": {"arch": "transformer"}}, "config field vision.arch: str 'transformer' is not"),
    ({"family": "clip", "vision": {"norm_eps": 0}}, r"config field vision.norm_eps: 0 is not in \(0, 1\)"),
    ({"family": "clip", "text": {"vocab_size": 100}}, "config field text.sot_id: 49406 is not below vocab_size"),
    ({"family": "clip", "image": {"mean": ["a", "b", "c"]}}, r"config field image.mean: expected tuple\[float"),
    ({"family": "blip", "text": {"heads": 5}}, "config field text.heads: 5 does not divide text.width 768"),
    ({"family": "blip", "parts": ["decoder", "nlvr"]}, "config field parts: "),
    # every field in range, but about 1.65e12 parameters in all
    ({"family": "clip", "vision": {"width": 16384, "heads": 128, "mlp_dim": 65536, "layers": 512}},
     r"about 1.65e\+12 parameters, over the 5e\+09"),
])
def test_a_hostile_config_is_one_line_naming_the_field(tmp_path, no_model_built, data, field):
    import re

    assert re.search(field, _load(tmp_path, data))


def test_json_nested_past_the_recursion_limit(tmp_path, no_model_built):
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ClipBlipError, match="cannot read .*config.json"):
        clipblip.load(tmp_path)


def test_an_oversized_config_is_not_read_whole(tmp_path, monkeypatch, no_model_built):
    from clipblip import checkpoint

    monkeypatch.setattr(checkpoint, "MAX_JSON_BYTES", 64)
    (tmp_path / "config.json").write_text(json.dumps({"family": "clip", "text": {"vocab": ["word"] * 20}}))
    with pytest.raises(ClipBlipError, match="config.json: larger than the cap of 64 bytes"):
        clipblip.load(tmp_path)


def test_build_checks_a_config_a_converter_made(no_model_built):
    # a converter copies a foreign config.json's values into our dataclasses; build is the last gate
    cfg = C.ClipConfig(vision=C.VisionConfig(width="768"))
    with pytest.raises(ClipBlipError, match="config field vision.width: expected int, got str '768'"):
        build(cfg)


RELEASES = {arch: oc_convert.config_from_open_clip(catalog.ARCHS[arch])
            for arch in sorted({catalog.get(n).arch for n in catalog.names("clip")})}
RELEASES["blip-base"] = C.BlipConfig()
RELEASES["blip-large-decoder"] = C.BlipConfig(
    vision=dataclasses.replace(C.BlipConfig().vision, width=1024, layers=24, heads=16, mlp_dim=4096),
    text=dataclasses.replace(C.BertConfig(), cross_width=1024), parts=("decoder",))


@pytest.mark.parametrize("name", ["RN50-quickgelu", "RN50x64-quickgelu", "ViT-B-32", "ViT-bigG-14", "blip-base",
                                  "blip-large-decoder"])
def test_the_estimate_is_within_3_percent_of_the_real_count(name):
    cfg = RELEASES[name]
    with torch.device("meta"):  # shapes only, no memory
        real = sum(p.numel() for p in build(cfg).parameters())
    assert abs(C.estimate_params(cfg) / real - 1) < 0.03, name


def test_every_release_and_every_embedded_model_passes():
    for name, cfg in RELEASES.items():
        assert C.validate(cfg) is cfg, name
        assert C.estimate_params(cfg) < C.MAX_PARAMS / 1.9, name  # bigG, the largest, has room to spare
    for name in catalog.EMBEDDED:
        if catalog.embedded(name):
            data = json.loads((catalog.embedded(name) / "config.json").read_text())
            assert json.loads(json.dumps(C.to_dict(C.from_dict(data)))) == data, name
