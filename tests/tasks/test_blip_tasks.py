"""BLIP's applications on a tiny model, each checked against the same computation done the slow, plain way."""

import warnings

import pytest
import torch
import torch.nn.functional as F

import clipblip
from clipblip import ClipBlipError
from clipblip.tasks.itm import image_tokens, rerank_image_to_text, rerank_text_to_image
from clipblip.tasks.vqa import question_states


@pytest.fixture(scope="module")
def model(tiny_blip_dir):
    return clipblip.load(tiny_blip_dir)


def _images(folder):
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png") and p.name != "broken.jpg")


def test_captions_do_not_depend_on_batching(model, image_folder):
    paths = _images(image_folder)[:4]
    for beams in (1, 3):
        together = clipblip.caption(model, paths, num_beams=beams, max_new_tokens=8)
        alone = [clipblip.caption(model, [p], num_beams=beams, max_new_tokens=8)[0] for p in paths]
        assert together == alone and all(isinstance(c, str) for c in together)


def test_greedy_caption_equals_argmax_of_teacher_forced_logits(model, image_folder):
    path = _images(image_folder)[0]
    text = clipblip.caption(model, [path], max_new_tokens=6)[0]
    # redo it the slow way: full forward pass per step, no cache
    pixels = model.preprocess([path])
    kv = model.image_kv(model.image_tokens(pixels), "decoder")
    ids = torch.tensor([[model.config.text.dec_id]])
    with torch.no_grad():
        for _ in range(6):
            nxt = model.lm_logits(ids, kv)[:, -1].argmax(-1, keepdim=True)
            if int(nxt) == model.config.text.sep_id:
                break
            ids = torch.cat([ids, nxt], 1)
    assert text == model.tokenizer.decode(ids[0, 1:].tolist())


def test_prompt_is_left_out_and_sampling_is_seeded(model, image_folder):
    path = _images(image_folder)[0]
    with_prompt = clipblip.caption(model, [path], prompt="a picture of", max_new_tokens=5)[0]
    assert not with_prompt.startswith("a picture of")
    a = clipblip.caption(model, [path], top_p=0.9, seed=7, max_new_tokens=8)
    b = clipblip.caption(model, [path], top_p=0.9, seed=7, max_new_tokens=8)
    assert a == b
    assert clipblip.caption(model, [path], top_p=1e-9, max_new_tokens=8) == clipblip.caption(
        model, [path], max_new_tokens=8)


def test_rank_answers_equal_brute_force_likelihoods(model, image_folder):
    path = _images(image_folder)[0]
    candidates = ["red", "a blue square", "two", "yes", "no"]
    ranked = clipblip.answer(model, [path], ["what color is it?"], candidates=candidates)[0]
    assert sorted(a for a, _ in ranked) == sorted(candidates)
    assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-5)
    states, keep = question_states(model, model.preprocess([path]), ["what color is it?"])
    kv = model.text_decoder.context_kv(states)
    loglik = {}
    with torch.no_grad():
        for c in candidates:
            ids = model.tokenize([c], first="dec")
            logp = model.lm_logits(ids, kv).log_softmax(-1)[0, :-1]
            loglik[c] = float(logp.gather(-1, ids[0, 1:, None]).sum())
    assert [a for a, _ in ranked] == sorted(candidates, key=lambda c: -loglik[c])


def test_generated_answer_is_text(model, image_folder):
    out = clipblip.answer(model, _images(image_folder)[:2], ["what is it?", ""])
    assert len(out) == 2 and all(isinstance(a, str) for a in out)


def test_match_equals_itm_softmax_with_enc_first(model, image_folder):
    paths = _images(image_folder)[:2]
    texts = ["a red thing", "", "word " * 100]  # an empty text and an overlong one: truncated with a warning
    with pytest.warns(UserWarning, match="truncated"):
        probs = clipblip.match(model, paths, texts)
    assert probs.shape == (2, 3) and bool(((probs >= 0) & (probs <= 1)).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids = model.tokenize(texts, first="enc")
    assert int(ids[0, 0]) == model.config.text.enc_id
    with torch.no_grad():
        tokens = model.image_tokens(model.preprocess(paths))
        for i in range(2):
            for j in range(3):
                row = ids[j:j + 1][:, : int((ids[j] != 0).sum())]  # each text alone, unpadded
                ref = model.itm_logits(row, model.image_kv(tokens[i:i + 1])).softmax(-1)[0, 1]
                assert float(probs[i, j]) == pytest.approx(float(ref), abs=1e-5)


@torch.no_grad()
def test_rerank_scores_are_itm_plus_itc(model, image_folder):
    paths = _images(image_folder)
    tokens, feats, kept = image_tokens(model, paths)
    assert kept == list(range(len(paths)))
    hits = rerank_text_to_image(model, ["a green square"], tokens, feats, top_k=3, shortlist=4)[0]
    text_feat = F.normalize(model.encode_text(model.tokenize(["a green square"])), dim=-1)
    ids = model.tokenize(["a green square"], first="enc")
    for row, score in hits:
        itm = model.itm_logits(ids, model.image_kv(tokens[row:row + 1]))[0, 1]
        assert score == pytest.approx(float(itm + feats[row] @ text_feat[0]), abs=1e-4)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    back = rerank_image_to_text(model, tokens[:2], feats[:2], ["a", "b c", "d"], top_k=2, shortlist=3)
    assert len(back) == 2 and all(len(r) == 2 for r in back)


def test_clip_model_is_refused_with_a_clear_error(tiny_clip_dir, image_folder):
    clip = clipblip.load(tiny_clip_dir)
    with pytest.raises(ClipBlipError, match="needs a BLIP model"):
        clipblip.caption(clip, _images(image_folder)[:1])


def test_missing_part_is_a_clear_error(tmp_path, tiny_blip_dir, image_folder):
    from dataclasses import replace

    from clipblip.models import BLIP

    full = clipblip.load(tiny_blip_dir)
    captioner = BLIP(replace(full.config, parts=("decoder",)))
    with pytest.raises(ClipBlipError, match="has no itm"):
        clipblip.match(captioner, _images(image_folder)[:1], ["x"])


def test_answer_pairs_one_image_with_many_questions(model, image_folder):
    path = _images(image_folder)[0]
    pixels = model.preprocess([path])[0]  # one preprocessed image, [3, S, S]
    by_tensor = clipblip.answer(model, pixels, ["what is it?", "what color?"])
    by_path = clipblip.answer(model, [path], ["what is it?", "what color?"])
    assert by_tensor == by_path and len(by_path) == 2
    with pytest.raises(ClipBlipError, match="2 images and 3 questions"):
        clipblip.answer(model, _images(image_folder)[:2], ["a", "b", "c"])
