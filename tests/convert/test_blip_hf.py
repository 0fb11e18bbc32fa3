"""Parity with transformers' BLIP (tiny configs, random weights, fp32): ITM logits and ITC similarities, decoder
logits, caption ids (greedy and beam), VQA answer ids; through HF directories, the original .pth layout, and our
HF export."""

import pytest
import torch
import torch.nn.functional as F

import clipblip
from blip_refs import hf_blip, pixels, to_original
from clipblip.generate import GenerationConfig
from clipblip.tasks.caption import caption_ids

TOL = 1e-4
# HF's ITM path starts texts with [CLS] (101); the original code with [ENC]. Both sides get these exact ids.
IDS = torch.tensor([[101, 2000, 2001, 2002, 102], [101, 2003, 102, 0, 0], [101, 7000, 7001, 7002, 102]])


def _load(tmp_path, hf):
    hf.save_pretrained(tmp_path)
    return clipblip.load(tmp_path)


def test_itm_and_itc(tmp_path):
    hf = hf_blip("retrieval")
    model = _load(tmp_path, hf)
    assert model.config.parts == ("encoder", "itc", "itm")
    px = pixels(3)
    mask = (IDS != 0).long()
    with torch.no_grad():
        itm = hf(input_ids=IDS, pixel_values=px, attention_mask=mask).itm_score
        itc = hf(input_ids=IDS, pixel_values=px, attention_mask=mask, use_itm_head=False).itm_score
        ours_itm = model.itm_logits(IDS, model.image_kv(model.image_tokens(px)))
        ours_itc = F.normalize(model.encode_image(px), dim=-1) @ F.normalize(model.encode_text(IDS), dim=-1).t()
    assert (itm - ours_itm).abs().max() <= TOL
    assert (itc - ours_itc).abs().max() <= TOL


def test_one_image_against_many_texts_reuses_its_keys(tmp_path):
    hf = hf_blip("retrieval")
    model = _load(tmp_path, hf)
    px = pixels(1)
    with torch.no_grad():
        ref = hf(input_ids=IDS, pixel_values=px.expand(3, -1, -1, -1), attention_mask=(IDS != 0).long()).itm_score
        ours = model.itm_logits(IDS, model.image_kv(model.image_tokens(px)))  # one image's kv, three texts
    assert (ref - ours).abs().max() <= TOL


def test_decoder_logits(tmp_path):
    hf = hf_blip("caption")
    model = _load(tmp_path, hf)
    ids = torch.tensor([[30522, 2000, 2001, 2002, 102], [30522, 2003, 2004, 2005, 2006]])
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values=pixels()).logits
        ours = model.lm_logits(ids, model.image_kv(model.image_tokens(pixels()), "decoder"))
    assert (ref - ours).abs().max() <= TOL


def _hf_new_tokens(out: torch.Tensor, prompt_len: int) -> list[list[int]]:
    rows = []
    for row in out[:, prompt_len:].tolist():
        rows.append(row[: row.index(102)] if 102 in row else [t for t in row if t != 0])
    return rows


@pytest.mark.parametrize("num_beams", [1, 3])
def test_caption_ids(tmp_path, num_beams):
    hf = hf_blip("caption", eos_bias=3.4)
    model = _load(tmp_path, hf)
    px = pixels(4)
    with torch.no_grad():
        ref = _hf_new_tokens(hf.generate(pixel_values=px, max_new_tokens=12, num_beams=num_beams), 1)
    cfg = GenerationConfig(max_new_tokens=12, num_beams=num_beams, eos_id=102, pad_id=0)
    ours = caption_ids(model, px, torch.tensor([[30522]]), cfg)
    assert ours == ref
    # the case can tell images apart, and exercises both ends: [SEP] before the limit, and the limit
    assert len({tuple(r) for r in ours}) > 1
    assert min(map(len, ours)) < 12 and max(map(len, ours)) == 12


def test_caption_with_a_prompt(tmp_path):
    hf = hf_blip("caption")
    model = _load(tmp_path, hf)
    px = pixels(2)
    prompt = torch.tensor([[101, 1037, 3861, 1997, 102]])  # "[CLS] a picture of [SEP]" as HF's processor gives
    with torch.no_grad():
        ref = _hf_new_tokens(hf.generate(pixel_values=px, input_ids=prompt.repeat(2, 1), max_new_tokens=8), 4)
    start = torch.tensor([[30522, 1037, 3861, 1997]])
    assert caption_ids(model, px, start, GenerationConfig(max_new_tokens=8, eos_id=102, pad_id=0)) == ref


@pytest.mark.parametrize("num_beams", [1, 2])
def test_vqa_answer_ids(tmp_path, num_beams):
    from clipblip.generate import generate

    hf = hf_blip("vqa", hidden_size=48)  # HF's VQA decoder attends to question states: widths must agree
    model = _load(tmp_path, hf)
    assert model.config.parts == ("encoder", "decoder")
    px = pixels(2)
    q = IDS[[0, 2]]  # equal lengths: HF's decoder ignores question padding, BLIP's masks it
    with torch.no_grad():
        ref = _hf_new_tokens(hf.generate(input_ids=q, pixel_values=px, max_new_tokens=6, num_beams=num_beams), 1)
        states = model.encode_question(q, model.image_kv(model.image_tokens(px)))
        start = torch.full((2, 1), 30522)
        ours = generate(model.decoder(states), start, GenerationConfig(max_new_tokens=6, num_beams=num_beams))
    assert ours == ref


def _tiny_heads(monkeypatch):
    """Width // 64 heads is BLIP's rule; the tiny test widths use 4."""
    from clipblip.convert import blip

    real = blip.infer_config
    monkeypatch.setattr(blip, "infer_config", lambda sd, **kw: real(sd, vision_heads=4, text_heads=4, **kw))


def test_original_pth_layout(tmp_path, monkeypatch):
    _tiny_heads(monkeypatch)
    hf = hf_blip("retrieval", vision_eps=1e-6)  # BLIP's own ViT epsilon (HF's default is 1e-5)
    state = to_original(hf.state_dict())
    state["temp"] = torch.tensor(0.05)
    # a retrieval checkpoint also carries momentum copies and queues: training state, set aside
    state["visual_encoder_m.cls_token"] = torch.zeros(1, 1, 48)
    state["image_queue"] = torch.zeros(16, 8)
    torch.save({"model": state, "epoch": 3}, tmp_path / "model_base_retrieval.pth")
    model = clipblip.load(tmp_path / "model_base_retrieval.pth")
    assert model.config.vision.norm_eps == 1e-6
    assert float(model.temp.detach()) == pytest.approx(0.05)
    px = pixels(3)
    with torch.no_grad():
        ref = hf(input_ids=IDS, pixel_values=px, attention_mask=(IDS != 0).long(), use_itm_head=False).itm_score
        ours = F.normalize(model.encode_image(px), dim=-1) @ F.normalize(model.encode_text(IDS), dim=-1).t()
    assert (ref - ours).abs().max() <= TOL


def test_original_pretrain_file_ties_the_decoder(tmp_path, monkeypatch):
    _tiny_heads(monkeypatch)
    hf = hf_blip("vqa", hidden_size=48)
    state = to_original(hf.state_dict())
    # make the decoder's shared weights equal to the encoder's, as BLIP's pretraining ties them
    for k in list(state):
        if k.startswith("text_decoder.bert.") and ".attention." not in k:
            enc = "text_encoder." + k[len("text_decoder.bert."):]
            if enc in state:
                state[k] = state[enc].clone()
    state["text_decoder.cls.predictions.decoder.weight"] = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    torch.save({"model": state}, tmp_path / "model_base.pth")
    model = clipblip.load(tmp_path / "model_base.pth")
    assert model.config.tie_decoder
    assert model.text_decoder.blocks[0].mlp is model.text_encoder.blocks[0].mlp
    assert model.text_decoder.blocks[0].attn is not model.text_encoder.blocks[0].attn
    clipblip.save(model, tmp_path / "native")  # tied weights stored once, re-tied on load
    again = clipblip.load(tmp_path / "native")
    assert again.text_decoder.word_embed is again.text_encoder.word_embed
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


@pytest.mark.parametrize("kind", ["caption", "retrieval", "vqa"])
def test_export_to_hf_round_trip(tmp_path, kind):
    import transformers as T

    from clipblip.export import export_hf

    hf = hf_blip(kind, **({"hidden_size": 48} if kind == "vqa" else {}))
    model = _load(tmp_path / "src", hf)
    export_hf(model, tmp_path / "hf")
    cls = {"caption": T.BlipForConditionalGeneration, "retrieval": T.BlipForImageTextRetrieval,
           "vqa": T.BlipForQuestionAnswering}[kind]
    again = cls.from_pretrained(tmp_path / "hf").eval()
    ref, back = hf.state_dict(), again.state_dict()
    assert set(ref) == set(back)
    assert all(torch.equal(ref[k], back[k]) for k in ref)


@pytest.mark.slow
def test_full_size_blip_base(tmp_path):
    """BLIP-base shapes (ViT-B/16 at 384, 12-layer BERT): ITM/ITC and caption ids, greedy and beam."""
    import transformers as T

    cfg = T.BlipConfig(text_config={"num_attention_heads": 12})
    torch.manual_seed(0)
    retrieval = T.BlipForImageTextRetrieval(cfg).eval()
    model = _load(tmp_path / "itm", retrieval)
    px = torch.randn(2, 3, 384, 384)
    with torch.no_grad():
        itm = retrieval(input_ids=IDS[:2], pixel_values=px, attention_mask=(IDS[:2] != 0).long()).itm_score
        ours = model.itm_logits(IDS[:2], model.image_kv(model.image_tokens(px)))
    assert (itm - ours).abs().max() <= TOL
    captioner = T.BlipForConditionalGeneration(cfg).eval()
    model = _load(tmp_path / "cap", captioner)
    for beams in (1, 3):
        with torch.no_grad():
            ref = _hf_new_tokens(captioner.generate(pixel_values=px, max_new_tokens=8, num_beams=beams), 1)
        cfg_gen = GenerationConfig(max_new_tokens=8, num_beams=beams, eos_id=102, pad_id=0)
        assert caption_ids(model, px, torch.tensor([[30522]]), cfg_gen) == ref


def test_original_file_resamples_positions_to_the_catalog_size(tmp_path, monkeypatch):
    """A fine-tuned file used at another resolution (BLIP's VQA runs at 480 from 384 weights): positions are
    resampled on load, as BLIP's load_checkpoint and HF's interpolate_pos_encoding do."""
    from clipblip import catalog

    _tiny_heads(monkeypatch)
    monkeypatch.setitem(catalog.ARCHS, "tiny-blip-48", {"vision": {"image_size": 48}})
    hf = hf_blip("retrieval", vision_eps=1e-6)
    torch.save({"model": to_original(hf.state_dict())}, tmp_path / "model.pth")
    model = clipblip.load(tmp_path / "model.pth", arch="tiny-blip-48")
    assert model.config.vision.image_size == 48 and model.visual.pos_embed.shape[0] == 36 + 1
    px = pixels(2, size=48)
    with torch.no_grad():
        ref = hf(input_ids=IDS[:2], pixel_values=px, attention_mask=(IDS[:2] != 0).long(),
                 interpolate_pos_encoding=True).itm_score
        ours = model.itm_logits(IDS[:2], model.image_kv(model.image_tokens(px)))
    assert (ref - ours).abs().max() <= TOL


def test_export_a_captioner_from_a_model_with_every_head(tmp_path, tiny_blip_dir):
    import transformers as T

    from clipblip.export import export_hf

    full = clipblip.load(tiny_blip_dir)
    export_hf(full, tmp_path / "cap", parts=("decoder",))
    hf = T.BlipForConditionalGeneration.from_pretrained(tmp_path / "cap").eval()
    ids = torch.tensor([[30522, 2000, 2001]])
    px = pixels(1)
    with torch.no_grad():
        ours = full.lm_logits(ids, full.image_kv(full.image_tokens(px), "decoder"))
        assert (hf(input_ids=ids, pixel_values=px).logits - ours).abs().max() <= TOL
