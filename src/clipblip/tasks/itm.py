"""Image-text matching with BLIP's ITM head, and retrieval reranked by it (ITC shortlist, then ITM)."""

from __future__ import annotations

from contextlib import closing

import torch
import torch.nn.functional as F

from ..errors import ClipBlipError
from .caption import require_blip
from .inputs import pixel_batches
from .retrieval import topk


@torch.no_grad()
def image_tokens(model, images, batch_size: int = 16, skip_bad: bool = False, skipped=None, progress=False,
                 workers: int | None = None):
    """ViT tokens [N, 1 + P, W] and ITC features [N, D] (normalized) of images, from one tower pass, with the
    indices of the images kept. `workers`: decoding threads, as in `inputs.pixel_batches`."""
    toks, feats, kept = [], [], []
    device = model.device
    with closing(pixel_batches(model, images, batch_size, skip_bad, skipped, progress, workers)) as batches:
        for idx, pixels in batches:
            t = model.image_tokens(pixels.to(device))
            toks.append(t)
            if "itc" in model.config.parts:
                feats.append(F.normalize(model.vision_proj(t[:, 0]).float(), dim=-1))
            kept += idx
    if not toks:
        first = f"; the first: {skipped.items[0][1]}" if skipped else ""
        raise ClipBlipError(f"none of the images could be read, nothing to match{first}")
    feats = torch.cat(feats) if feats else None
    return torch.cat(toks), feats, kept


def itm_scores(model, tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """[n_images, n_texts] (no-match, match) logits: each image's cross-attention keys/values once, all texts."""
    rows = []
    for i in range(tokens.shape[0]):
        rows.append(model.itm_logits(ids, model.image_kv(tokens[i:i + 1])))
    return torch.stack(rows)


@torch.no_grad()
def match(model, images, texts, batch_size: int = 16) -> torch.Tensor:
    """ITM match probability [n_images, n_texts]. Texts start with [ENC], as BLIP's ITM was trained."""
    require_blip(model, "image-text matching")
    model.require("itm", "score image-text matching")
    texts = [texts] if isinstance(texts, str) else list(texts)
    ids = model.tokenize(texts, first="enc").to(model.device)
    tokens, _, _ = image_tokens(model, images, batch_size)
    return itm_scores(model, tokens, ids).softmax(-1)[..., 1].cpu()


@torch.no_grad()
def rerank_text_to_image(model, texts, tokens: torch.Tensor, image_feats: torch.Tensor, top_k: int = 5,
                         shortlist: int = 16):
    """Per text, [(image row, score)] best first: ITC top-`shortlist`, then score = ITM match logit + ITC
    similarity (BLIP's retrieval evaluation)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    text_feats, enc_ids = _text_side(model, texts, image_feats.device)
    sims, index = topk(text_feats, image_feats, shortlist)
    out = []
    for q in range(len(texts)):
        shortlisted = tokens[index[q]]  # the text against its shortlist, in one batch
        logits = model.itm_logits(enc_ids[q:q + 1].expand(len(shortlisted), -1), model.image_kv(shortlisted))[:, 1]
        out.append(_best(index[q], logits + sims[q], top_k))
    return out


@torch.no_grad()
def rerank_image_to_text(model, tokens: torch.Tensor, image_feats: torch.Tensor, texts, top_k: int = 5,
                         shortlist: int = 16):
    """Per image, [(text row, score)] best first, scored as in `rerank_text_to_image`."""
    text_feats, enc_ids = _text_side(model, list(texts), image_feats.device)
    sims, index = topk(image_feats, text_feats, shortlist)
    out = []
    for i in range(tokens.shape[0]):
        logits = model.itm_logits(enc_ids[index[i]], model.image_kv(tokens[i:i + 1]))[:, 1]
        out.append(_best(index[i], logits + sims[i], top_k))
    return out


def _text_side(model, texts: list[str], device):
    """Normalized ITC features of the texts ([CLS] first) and their ITM ids ([ENC] first)."""
    feats = F.normalize(model.encode_text(model.tokenize(texts).to(device)), dim=-1)
    return feats, model.tokenize(texts, first="enc").to(device)


def _best(rows: torch.Tensor, score: torch.Tensor, top_k: int) -> list[tuple[int, float]]:
    """The top_k (gallery row, final score) of a shortlist, best first."""
    order = score.argsort(descending=True)[:top_k]
    return [(int(rows[o]), float(score[o])) for o in order]
