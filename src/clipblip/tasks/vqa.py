"""Visual question answering: by generation, or by ranking candidate answers (BLIP's rank mode)."""

from __future__ import annotations

import torch

from ..errors import ClipBlipError
from ..generate import GenerationConfig, generate
from .caption import require_blip
from .inputs import pixel_batches


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _pair(model, images, questions):
    if isinstance(images, torch.Tensor):
        images = images.unsqueeze(0) if images.dim() == 3 else images  # one preprocessed image [3, S, S]
    else:
        images = _as_list(images)
    questions = _as_list(questions)
    n = len(images)
    if len(questions) == 1 and n > 1:
        questions = questions * n
    if n == 1 and len(questions) > 1:
        many = len(questions)
        images = images.expand(many, -1, -1, -1) if isinstance(images, torch.Tensor) else images * many
    if len(questions) != len(images):
        raise ClipBlipError(f"got {len(images)} images and {len(questions)} questions: give one question per image, "
                            "or one image or one question for all")
    return images, questions


def question_states(model, pixels: torch.Tensor, questions: list[str]):
    """Questions encoded against their images: states [B, L, W] and keep-mask [B, L]. Questions start with [ENC]
    as in BLIP's VQA code (HF's port starts them with [CLS])."""
    device = model.device
    ids = model.tokenize(questions, first="enc").to(device)
    kv = model.image_kv(model.image_tokens(pixels.to(device)))
    return model.encode_question(ids, kv), ids != model.config.text.pad_id


@torch.no_grad()
def answer(model, images, questions, candidates=None, num_beams: int = 3, max_new_tokens: int = 10, k: int = 128,
           batch_size: int = 16):
    """One answer per (image, question): generated text, or with `candidates` the ranked [(answer, prob)]."""
    require_blip(model, "question answering")
    for part in ("encoder", "decoder"):
        model.require(part, "answer questions")
    images, questions = _pair(model, images, questions)
    out = []
    for idx, pixels in pixel_batches(model, images, batch_size):
        states, keep = question_states(model, pixels, [questions[i] for i in idx])
        if candidates is None:
            out += _generate(model, states, keep, num_beams, max_new_tokens)
        else:
            out += rank_answers(model, states, keep, list(candidates), k)
    return out


def _generate(model, states, keep, num_beams, max_new_tokens) -> list[str]:
    t = model.config.text
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams, eos_id=t.sep_id, pad_id=t.pad_id)
    start = torch.full((states.shape[0], 1), t.dec_id, device=states.device)
    return [model.tokenizer.decode(ids) for ids in generate(model.decoder(states, keep), start, cfg)]


def rank_answers(model, states, keep, candidates: list[str], k: int = 128) -> list[list[tuple[str, float]]]:
    """BLIP's rank mode: shortlist the k candidates whose first token is likeliest after [DEC], score each by the
    decoder's log-likelihood of the whole answer, and return them ranked with probabilities (softmax over the
    shortlist's log-likelihoods; BLIP's own code scores with a label-smoothed loss, which only rescales)."""
    if not candidates:
        raise ClipBlipError("the candidate answer list is empty")
    t = model.config.text
    ids = model.tokenize(candidates, first="dec").to(states.device)  # [C, La]: [DEC] answer [SEP] [PAD]...
    k = min(k, len(candidates))
    dec = model.decoder(states, keep)  # the questions' cross-attention keys/values, once for both passes
    first = dec.step(torch.full((states.shape[0], 1), t.dec_id, device=states.device))
    top = first.softmax(-1)[:, ids[:, 1]].topk(k, dim=1).indices  # [B, k]
    rows = ids[top.reshape(-1)]  # [B*k, La], grouped by question
    logp = model.lm_logits(rows, dec.context_kv, dec.context_mask).log_softmax(-1)[:, :-1]
    target = rows[:, 1:]
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * (target != t.pad_id)
    scores = token_logp.sum(-1).view(-1, k)
    probs = scores.softmax(-1)
    order = probs.argsort(dim=1, descending=True)
    return [[(candidates[int(top[b, j])], float(probs[b, j])) for j in order[b]] for b in range(len(top))]
