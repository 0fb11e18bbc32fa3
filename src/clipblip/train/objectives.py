"""Training objectives: each a function (model, batch, ctx) -> {loss name: scalar}; the loop sums them.

Batches (built by `train/data.py`): CLIP {"pixels", "tokens"}; BLIP {"pixels", "ids" ([CLS]-started, padded to
max_length), "item_ids" (equal ids: the same image)}; VQA {"pixels", "question_ids", "answer_ids",
"answer_weights", "answer_counts"}. Objectives with minimal-edit negatives also get "edit_tokens" (CLIP) or
"edit_ids" (BLIP): one edit of each caption shown, and "has_edit" (the rows whose caption has one).
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
from .losses import contrastive_loss, hard_negatives, itc_distill_loss, itm_loss, lm_loss, pool_negatives
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


def clip_negclip(model, batch, ctx: Context) -> dict:
    """CLIP with NegCLIP's hard negatives: each image's minimal edit of its caption is one more negative text of
    the image-to-text softmax (text-to-image unchanged)."""
    img = model.encode_image(batch["pixels"])
    txt = model.encode_text(batch["tokens"])
    edits = model.encode_text(batch["edit_tokens"])
    return {"contrastive": contrastive_loss(img.float(), txt.float(), model.logit_scale.float(), edits.float(),
                                            batch["has_edit"])}


def _text_cls(model, ids):
    return model.text_encoder(ids, mask=model.self_mask(ids))[:, 0]


def _itc(model, batch, ctx: Context, tokens, edits: bool = False):
    """ITC with momentum distillation; returns (loss, online image and text features). `edits`: the batch's
    minimal edits are extra negative texts of the image-to-text direction."""
    if ctx.momentum is None:
        raise ClipBlipError("this objective needs the momentum encoder (the training loop builds it)")
    img = F.normalize(model.vision_proj(tokens[:, 0]).float(), dim=-1)
    txt = F.normalize(model.text_proj(_text_cls(model, batch["ids"])).float(), dim=-1)
    if not ctx.frozen:
        ctx.momentum.update(model)
    img_m, txt_m = ctx.momentum.features(batch["pixels"], batch["ids"])
    extra = {}
    if edits:
        extra = {"extra_txt_m": ctx.momentum.text_features(batch["edit_ids"]),
                 "extra_mask": batch["has_edit"]}
    loss, gathered = itc_distill_loss(img, txt, img_m, txt_m, batch["item_ids"], model.temp.float(), ctx.alpha,
                                      *ctx.momentum.queue(), **extra)
    if not ctx.frozen:
        text = gather(batch["ids"])[0] if ctx.momentum.queue_text is not None else None
        ctx.momentum.enqueue(*gathered, text)
    return loss, img, txt


def _enc(model, ids):
    enc_ids = ids.clone()
    enc_ids[:, 0] = model.config.text.enc_id
    return enc_ids


def _itm(model, batch, ctx: Context, tokens, img, txt, edits: bool = False, pool: bool = False):
    """ITM on each positive pair, each text with a hard negative image, each image with a hard negative text
    (`pool`: mined from the queue's recent texts instead of the batch). `edits`: each image also with the
    minimal edit of its caption, labelled no match."""
    enc_ids = _enc(model, batch["ids"])
    generator = ctx.generator()
    neg_img, neg_txt, _ = hard_negatives(img.detach(), txt.detach(), batch["item_ids"], model.temp.detach(),
                                         generator)
    all_tokens, _ = gather(tokens, grad=True)
    if pool:
        m = ctx.momentum
        picked = pool_negatives(img.detach(), batch["item_ids"], m.queue_txt, m.queue_ids, model.temp.detach(),
                                generator)
        neg_ids = _enc(model, m.queue_text[picked])
    else:
        neg_ids = gather(enc_ids)[0][neg_txt]
    ids, images = [enc_ids, enc_ids, neg_ids], [tokens, all_tokens[neg_img], tokens]
    if edits:
        has = batch["has_edit"]
        ids.append(_enc(model, batch["edit_ids"])[has])
        images.append(tokens[has])
    return itm_loss(model.itm_logits(torch.cat(ids), model.image_kv(torch.cat(images))), enc_ids.shape[0])


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


def retrieval_edits(model, batch, ctx: Context) -> dict:
    """Retrieval fine-tuning with minimal-edit negatives: each image's edit of its caption is one more negative
    text of ITC (as NegCLIP) and one more no-match pair of ITM."""
    tokens = model.image_tokens(batch["pixels"])
    itc, img, txt = _itc(model, batch, ctx, tokens, edits=True)
    return {"itc": itc, "itm": _itm(model, batch, ctx, tokens, img, txt, edits=True)}


def retrieval_queue(model, batch, ctx: Context) -> dict:
    """Retrieval fine-tuning whose ITM negative texts are mined from the queue (the last queue_size texts, by
    their momentum ITC features) rather than from the batch; no synthetic edits."""
    tokens = model.image_tokens(batch["pixels"])
    itc, img, txt = _itc(model, batch, ctx, tokens)
    return {"itc": itc, "itm": _itm(model, batch, ctx, tokens, img, txt, pool=True)}


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
    edits: bool = False  # batches carry one minimal-edit negative per caption (records with "negatives")
    text_queue: bool = False  # the momentum queue keeps its texts' token ids (ITM negatives mined from it)

    @property
    def collate(self) -> str:
        return self.batch or self.family


OBJECTIVES = {
    "clip": Objective(clip, "clip"),
    "clip-negclip": Objective(clip_negclip, "clip", edits=True),
    "blip-pretrain": Objective(blip_pretrain, "blip", ("itc", "itm", "decoder"), momentum=True),
    "retrieval": Objective(retrieval, "blip", ("itc", "itm"), momentum=True, unused_parameters=True),
    "retrieval-edits": Objective(retrieval_edits, "blip", ("itc", "itm"), momentum=True, unused_parameters=True,
                                 edits=True),
    "retrieval-queue": Objective(retrieval_queue, "blip", ("itc", "itm"), momentum=True, unused_parameters=True,
                                 text_queue=True),
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
