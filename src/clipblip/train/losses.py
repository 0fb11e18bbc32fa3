"""The losses of both families as pure functions of features and logits.

Each returns a scalar that is correct on one process and under torchrun alike: negatives are gathered from every
rank and sums are divided by global counts (see `distributed.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather, global_mean


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor, extra_txt=None,
                     extra_mask=None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over the global batch. img, txt: [B, D] (normalized here); logit_scale: log of
    the inverse temperature. Each rank scores its own rows against every rank's (open_clip's local_loss with
    gather_with_grad): B x global_B logits instead of global_B^2, and the same gradient.
    extra_txt [B, D]: one more negative text per image (NegCLIP's minimal edit of its caption), scored by every
    image of the global batch in the image-to-text direction only (logits over 2 x global_B texts); extra_mask
    [B] bool: the rows that hold one (the others' are left out)."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    all_img, offset = gather(img, grad=True)
    all_txt, _ = gather(txt, grad=True)
    scale = logit_scale.exp()
    labels = torch.arange(img.shape[0], device=img.device) + offset
    i2t = scale * img @ all_txt.t()
    if extra_txt is not None:
        all_extra = _gathered_rows(F.normalize(extra_txt, dim=-1), extra_mask, grad=True)
        i2t = torch.cat([i2t, scale * img @ all_extra.t()], dim=1)
    loss = (F.cross_entropy(i2t, labels, reduction="sum")
            + F.cross_entropy(scale * txt @ all_img.t(), labels, reduction="sum")) / 2
    return global_mean(loss, img.shape[0])


def _gathered_rows(x: torch.Tensor, mask, grad: bool = False) -> torch.Tensor:
    """The global batch's rows of x whose mask is set (every row without a mask)."""
    rows, _ = gather(x, grad=grad)
    if mask is None:
        return rows
    keep, _ = gather(mask.to(torch.uint8))
    return rows[keep.bool()]


def positives(ids: torch.Tensor, all_ids: torch.Tensor) -> torch.Tensor:
    """[B, N] float targets: 1/k on the k columns whose item id equals the row's (the same image), BLIP's
    retrieval targets; with unique ids this is the identity in the row's own column."""
    same = (ids[:, None] == all_ids[None, :]).float()
    return same / same.sum(1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum over rows of -sum(targets * log_softmax(logits)) (BLIP's ITC with soft targets)."""
    return -(F.log_softmax(logits, dim=1) * targets).sum()


def itc_distill_loss(img, txt, img_m, txt_m, ids, temp, alpha: float, queue_img=None, queue_txt=None,
                     queue_ids=None, extra_txt_m=None, extra_mask=None) -> tuple[torch.Tensor, tuple]:
    """BLIP/ALBEF's ITC: online features against momentum features of the global batch plus the queue, with
    targets mixed from the ground truth and the momentum model's own similarities (momentum distillation).

    img, txt: [B, D] online, normalized. img_m, txt_m: [B, D] momentum, normalized, no grad. ids: [B] item ids
    (equal ids are positives). queue_*: [Q, D] / [Q] past momentum features. extra_txt_m [B, D] (momentum,
    normalized) with extra_mask [B]: minimal edits of the captions, extra negative texts of the image-to-text
    direction (as NegCLIP), never enqueued and given no distillation mass (an edit is false by construction,
    however alike the momentum model finds it). Returns (loss, the gathered momentum features and ids, for the
    caller to enqueue)."""
    with torch.no_grad():
        all_img_m, _ = gather(img_m)
        all_txt_m, _ = gather(txt_m)
        all_ids, _ = gather(ids)
        bank_img = all_img_m if queue_img is None else torch.cat([all_img_m, queue_img])
        bank_txt = all_txt_m if queue_txt is None else torch.cat([all_txt_m, queue_txt])
        bank_ids = all_ids if queue_ids is None else torch.cat([all_ids, queue_ids])
        truth = positives(ids, bank_ids)
        t_i2t = alpha * F.softmax(img_m @ bank_txt.t() / temp, dim=1) + (1 - alpha) * truth
        t_t2i = alpha * F.softmax(txt_m @ bank_img.t() / temp, dim=1) + (1 - alpha) * truth
        if extra_txt_m is not None:
            extra = _gathered_rows(extra_txt_m, extra_mask)
            t_i2t = torch.cat([t_i2t, t_i2t.new_zeros(t_i2t.shape[0], extra.shape[0])], dim=1)
            bank_i2t = torch.cat([bank_txt, extra])
        else:
            bank_i2t = bank_txt
    loss = (soft_cross_entropy(img @ bank_i2t.t() / temp, t_i2t)
            + soft_cross_entropy(txt @ bank_img.t() / temp, t_t2i)) / 2
    return global_mean(loss, img.shape[0]), (all_img_m, all_txt_m, all_ids)


def hard_negatives(img, txt, ids, temp, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """BLIP's ITM negatives, drawn from the *global* batch: for each text an image, for each image a text,
    sampled in proportion to softmax(similarity), never a positive. The draw covers every rank's rows with one
    rank-independent generator, so N ranks pick what one process with their whole batch picks.
    Returns (negative image index per local text, negative text index per local image, this rank's offset),
    indices into the gathered batch."""
    with torch.no_grad():
        all_img, offset = gather(img)
        all_txt, _ = gather(txt)
        all_ids, _ = gather(ids)
        same = all_ids[:, None] == all_ids[None, :]
        sim = all_img @ all_txt.t() / temp
        w_i2t = (F.softmax(sim.float(), dim=1) + 1e-4).masked_fill(same, 0)
        w_t2i = (F.softmax(sim.t().float(), dim=1) + 1e-4).masked_fill(same, 0)
        if bool((w_i2t.sum(1) == 0).any()):
            raise ValueError("ITM needs a negative for every item: a batch holds only pairs of one image")
        neg_img = torch.multinomial(w_t2i.cpu(), 1, generator=generator).squeeze(1).to(img.device)
        neg_txt = torch.multinomial(w_i2t.cpu(), 1, generator=generator).squeeze(1).to(img.device)
    rows = slice(offset, offset + img.shape[0])
    return neg_img[rows], neg_txt[rows], offset


def pool_negatives(img, ids, pool_txt, pool_ids, temp, generator: torch.Generator) -> torch.Tensor:
    """ITM negative texts mined from a pool of recent texts (the queue) instead of the batch: for each image of
    the global batch one pool entry, drawn as `hard_negatives` draws (in proportion to softmax(similarity)),
    never one of the image's own item nor an empty slot (id < 0). img [B, D] and ids [B] this rank's, pool_txt
    [Q, D] and pool_ids [Q] the same on every rank. Returns the pool index of each local image's negative."""
    with torch.no_grad():
        all_img, offset = gather(img)
        all_ids, _ = gather(ids)
        banned = (all_ids[:, None] == pool_ids[None, :]) | (pool_ids < 0)[None, :]
        w = (F.softmax((all_img @ pool_txt.t() / temp).float(), dim=1) + 1e-4).masked_fill(banned, 0)
        if bool((w.sum(1) == 0).any()):
            raise ValueError("ITM needs a negative for every item: the text pool holds only its own texts")
        picked = torch.multinomial(w.cpu(), 1, generator=generator).squeeze(1).to(img.device)
    return picked[offset:offset + img.shape[0]]


def itm_loss(logits: torch.Tensor, n_pos: int) -> torch.Tensor:
    """logits [n_pos + n_neg, 2] with the positive pairs first: cross-entropy against match / no match."""
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[:n_pos] = 1
    return global_mean(F.cross_entropy(logits.float(), labels, reduction="sum"), logits.shape[0])


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int, label_smoothing: float = 0.1,
            weights: torch.Tensor | None = None, per: str = "token") -> torch.Tensor:
    """Next-token cross-entropy. logits [B, L, V] predict targets [B, L] (already shifted); pad_id is ignored.
    per="token": the mean over the global batch's tokens (captioning, pretraining). per="sequence": each
    sequence's token sum times its weight, [B], not reduced: the caller knows what to average over (BLIP's VQA
    sums a question's weighted answers, then averages over the global batch's questions)."""
    keep = targets != pad_id
    flat = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none",
                           label_smoothing=label_smoothing).view(targets.shape) * keep
    if per == "token":
        return global_mean(flat.sum(), int(keep.sum()))
    return flat.sum(1) * (weights if weights is not None else 1.0)
