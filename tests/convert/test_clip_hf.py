"""Parity with transformers' CLIPModel: load its saved directory, compare features and logits at fp32."""

import json

import pytest
import torch
import torch.nn.functional as F

import clipblip
from clip_refs import features, hf_clip, max_diff, token_ids

TOL = 1e-4


def _compare(ours, hf, size=32):
    pixels = torch.randn(3, 3, size, size)
    ids = token_ids(pad=49407)
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values=pixels)
        img, txt = ours.encode_image(pixels), ours.encode_text(ids)
        logits_img, logits_txt = ours(pixels, ids)
    assert max_diff(ref.image_embeds, F.normalize(img, dim=-1)) <= TOL
    assert max_diff(ref.text_embeds, F.normalize(txt, dim=-1)) <= TOL
    # the unnormalized features too: they are what encode_* returns
    assert max_diff(features(hf.get_image_features(pixel_values=pixels)), img) <= TOL
    assert max_diff(features(hf.get_text_features(input_ids=ids)), txt) <= TOL
    assert max_diff(ref.logits_per_image, logits_img) <= TOL
    assert max_diff(ref.logits_per_text, logits_txt) <= TOL


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_hf_directory_safetensors(tmp_path, act):
    hf = hf_clip(act)
    hf.save_pretrained(tmp_path)
    model = clipblip.load(tmp_path)
    assert model.config.text.act == act and model.config.vision.act == act
    _compare(model, hf)


def test_hf_directory_pytorch_bin(tmp_path):
    hf = hf_clip()
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    hf.config.save_pretrained(tmp_path)
    _compare(clipblip.load(tmp_path), hf)


def test_legacy_eos_id_pools_at_argmax(tmp_path):
    """Hub configs of OpenAI's models say eos_token_id=2, which transformers reads as 'pool at argmax(ids)'."""
    hf = hf_clip()
    hf.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["text_config"]["eos_token_id"] = 2
    (tmp_path / "config.json").write_text(json.dumps(data))
    model = clipblip.load(tmp_path)
    assert model.config.text.eot_id == 49407
    _compare(model, hf)


def test_position_embeddings_resample_to_a_larger_input(tmp_path):
    hf = hf_clip()
    hf.save_pretrained(tmp_path)
    model = clipblip.load(tmp_path)
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref = features(hf.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True))
        assert max_diff(ref, model.encode_image(pixels)) <= TOL


def test_export_to_hf_round_trip(tmp_path):
    from transformers import CLIPModel

    from clipblip.export import export_hf

    hf = hf_clip("gelu")
    hf.save_pretrained(tmp_path / "src")
    model = clipblip.load(tmp_path / "src")
    export_hf(model, tmp_path / "hf")
    again = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    _compare(model, again)
    ref, back = hf.state_dict(), again.state_dict()
    assert all(torch.equal(ref[k], back[k]) for k in ref)


def test_native_round_trip_is_exact(tmp_path):
    hf = hf_clip()
    hf.save_pretrained(tmp_path / "src")
    model = clipblip.load(tmp_path / "src")
    clipblip.save(model, tmp_path / "native")
    again = clipblip.load(tmp_path / "native")
    assert again.config == model.config
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_full_size_vit_b32(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    hf = CLIPModel(CLIPConfig()).eval()  # the defaults are ViT-B/32's shapes
    hf.save_pretrained(tmp_path)
    _compare(clipblip.load(tmp_path), hf, size=224)
