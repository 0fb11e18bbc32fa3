"""Training objectives: each a function (model, batch, ctx) -> {loss name: scalar}; the loop sums them.

Batches (built by `train/data.py`): CLIP {"pixels", "tokens"}; BLIP {"pixels", "ids" ([CLS]-started, padded to
max_length), "item_ids" (equal ids: the same image)}; VQA {"pixels", "question_ids", "answer_ids",
"answer_weights", "answer_counts"}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..distributed import gather, global_mean
from ..errors import ClipBlipError
from ..nn import padding_mask
from .losses import contrastive_loss, hard_negatives, itc_distill_loss, itm_loss, lm_loss
from .momentum import Momentum


@dataclass
class Context:
    """What an objective may read besides the model and batch: the step (for a rank-independent ITM draw),
    the momentum encoder and the distillation weight."""
    step: int = 0
    micro: int = 0
    seed: int = 0
    momentum: Momentum | None = None
    alpha: float = 0.4
    label_smoothing: float = 0.1
    frozen: bool = False  # evaluation: leave the momentum encoder and its queues as they are

    def generator(self) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.step, self.micro]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(state))


def clip(model, batch, ctx: Context) -> dict:
    img = model.encode_image(batch["pixels"])
    txt = model.encode_text(batch["tokens"])
    return {"contrastive": contrastive_loss(img.float(), txt.float(), model.logit_scale.float())}


def _text_cls(model, ids):
    return model.text_encoder(ids, mask=model.self_mask(ids))[:, 0]


def _itc(model, batch, ctx: Context, tokens):
    """ITC with momentum distillation; returns (loss, online image and text features)."""
    if ctx.momentum is None:
        raise ClipBlipError("this objective needs the momentum encoder (the training loop builds it)")
    img = F.normalize(model.vision_proj(tokens[:, 0]).float(), dim=-1)
    txt = F.normalize(model.text_proj(_text_cls(model, batch["ids"])).float(), dim=-1)
    if not ctx.frozen:
        ctx.momentum.update(model)
    img_m, txt_m = ctx.momentum.features(batch["pixels"], batch["ids"])
    loss, gathered = itc_distill_loss(img, txt, img_m, txt_m, batch["item_ids"], model.temp.float(), ctx.alpha,
                                      *ctx.momentum.queue())
    if not ctx.frozen:
        ctx.momentum.enqueue(*gathered)
    return loss, img, txt


def _itm(model, batch, ctx: Context, tokens, img, txt):
    """ITM on each positive pair, each text with a hard negative image, each image with a hard negative text."""
    enc_ids = batch["ids"].clone()
    enc_ids[:, 0] = model.config.text.enc_id
    neg_img, neg_txt, _ = hard_negatives(img.detach(), txt.detach(), batch["item_ids"], model.temp.detach(),
                                         ctx.generator())
    all_tokens, _ = gather(tokens, grad=True)
    all_ids, _ = gather(enc_ids)
    ids = torch.cat([enc_ids, enc_ids, all_ids[neg_txt]])
    images = torch.cat([tokens, all_tokens[neg_img], tokens])
    return itm_loss(model.itm_logits(ids, model.image_kv(images)), enc_ids.shape[0])


def _lm(model, ids, context_kv, ctx: Context, context_mask=None, **kwargs):
    dec = ids.clone()
    dec[:, 0] = model.config.text.dec_id
    logits = model.lm_logits(dec, context_kv, context_mask)[:, :-1]
    return lm_loss(logits, dec[:, 1:], model.config.text.pad_id, ctx.label_smoothing, **kwargs)


def blip_pretrain(model, batch, ctx: Context) -> dict:
    """BLIP's three pretraining losses in one step: ITC (momentum + queue + distillation), ITM with hard
    negatives, LM with the decoder that shares all but self-attention with the encoder."""
    tokens = model.image_tokens(batch["pixels"])
    itc, img, txt = _itc(model, batch, ctx, tokens)
    return {"itc": itc, "itm": _itm(model, batch, ctx, tokens, img, txt),
            "lm": _lm(model, batch["ids"], model.image_kv(tokens, "decoder"), ctx)}


def retrieval(model, batch, ctx: Context) -> dict:
    """BLIP's retrieval fine-tuning: ITC + ITM, captions of the same image counted as positives."""
    tokens = model.image_tokens(batch["pixels"])
    itc, img, txt = _itc(model, batch, ctx, tokens)
    return {"itc": itc, "itm": _itm(model, batch, ctx, tokens, img, txt)}


def caption(model, batch, ctx: Context) -> dict:
    """Captioning fine-tuning: the decoder's LM loss (label smoothing 0.1, as BLIP)."""
    tokens = model.image_tokens(batch["pixels"])
    return {"lm": _lm(model, batch["ids"], model.image_kv(tokens, "decoder"), ctx)}


def vqa(model, batch, ctx: Context) -> dict:
    """BLIP's VQA: the question encoded against the image ([ENC] first), then the answer decoder attends to the
    question states; each answer's token loss is weighted by its share of the annotators, summed per question."""
    tokens = model.image_tokens(batch["pixels"])
    q = batch["question_ids"]
    states = model.encode_question(q, model.image_kv(tokens))
    counts = batch["answer_counts"]
    states = states.repeat_interleave(counts, dim=0)
    keep = (q != model.config.text.pad_id).repeat_interleave(counts, dim=0)
    mask = None if bool(keep.all()) else padding_mask(keep, 1, causal=False)
    seq = _lm(model, batch["answer_ids"], model.image_kv(states, "decoder"), ctx, mask,
              weights=batch["answer_weights"], per="sequence")
    return {"vqa": global_mean(seq.sum(), q.shape[0])}


@dataclass(frozen=True)
class Objective:
    """One training objective and everything the loop needs to know to run it."""
    loss: Callable  # (model, batch, ctx) -> {loss name: scalar}
    family: str  # the model family it trains
    parts: tuple[str, ...] = ()  # the BLIP parts it needs
    momentum: bool = False  # needs the momentum encoder and queues (ITC with distillation)
    batch: str = ""  # the batch `train/data.Collate` builds: "clip", "blip" or "vqa" ("": the family's)
    questions: bool = False  # trains on question-answer records (the others: on captions)
    untie_decoder: bool = False  # a checkpoint whose decoder shares the encoder's weights is untied first
    # DDP: some parameters get no gradient in a step (a part the objective does not use)
    unused_parameters: bool = False

    @property
    def collate(self) -> str:
        return self.batch or self.family


OBJECTIVES = {
    "clip": Objective(clip, "clip"),
    "blip-pretrain": Objective(blip_pretrain, "blip", ("itc", "itm", "decoder"), momentum=True),
    "retrieval": Objective(retrieval, "blip", ("itc", "itm"), momentum=True, unused_parameters=True),
    "caption": Objective(caption, "blip", ("decoder",), unused_parameters=True),
    "vqa": Objective(vqa, "blip", ("encoder", "decoder"), batch="vqa", questions=True, untie_decoder=True,
                     unused_parameters=True),
}


def get(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ClipBlipError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def check(objective: str, model) -> None:
    """A clear error before training starts when the model cannot run the objective."""
    spec = get(objective)
    family = model.config.family
    if spec.family != family:
        raise ClipBlipError(f"objective {objective!r} trains a {spec.family.upper()} model; this one is "
                            f"{family.upper()}")
    missing = [p for p in spec.parts if p not in model.config.parts]
    if missing:
        raise ClipBlipError(f"objective {objective!r} needs the BLIP parts {missing}; the model has "
                            f"{list(model.config.parts)}")
