"""`query`: embed a text or an image with the index's CLIP model, search, and optionally rerank the shortlist
with BLIP's image-text matching head (the ITC/CLIP shortlist, then ITM, as BLIP's retrieval does)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import ClipBlipError
from ..jobs import Skipped
from ..tasks.inputs import image_features, text_features
from .reader import Hit, Index


@torch.no_grad()
def query(idx: Index, model, text: str | None = None, image=None, k: int = 10, blip=None,
          shortlist: int = 50) -> list[Hit]:
    """The top k hits for a text or an image (a path or PIL image). `model`: a loaded CLIP model (or a source
    for `clipblip.load`). With `blip`, the top `shortlist` are reranked by ITM and their score is the match
    probability (the search score stays in `meta["search_score"]`); hits without an image are left out."""
    if (text is None) == (image is None):
        raise ClipBlipError("give a text or an image to search with (one of them)")
    if blip is not None and text is None:
        raise ClipBlipError("the ITM rerank scores an image against a text: rerank a text query, not an image")
    model = _loaded(model)
    vec = text_features(model, [text]) if text is not None else image_features(model, [image])[0]
    if vec.shape[-1] != idx.dim:
        raise ClipBlipError(f"the model makes {vec.shape[-1]}-d vectors but the index holds {idx.dim}-d ones: "
                            f"use the index's model, {idx.model}")
    hits = idx.search(vec.numpy(), max(k, shortlist) if blip is not None else k)[0]
    return rerank(_loaded(blip), text, hits)[:k] if blip is not None else hits


@torch.no_grad()
def rerank(blip, text: str, hits: list[Hit]) -> list[Hit]:
    """Hits reordered by BLIP's ITM match probability for `text`, best first (unreadable images left out)."""
    from ..tasks.caption import require_blip
    from ..tasks.itm import image_tokens, itm_scores

    require_blip(blip, "the ITM rerank")
    blip.require("itm", "rerank by image-text matching")
    with_image = [h for h in hits if h.path]
    if not with_image:
        return []
    skipped = Skipped()
    tokens, _, kept = image_tokens(blip, [h.path for h in with_image], skip_bad=True, skipped=skipped)
    ids = blip.tokenize([text], first="enc").to(tokens.device)
    probs = itm_scores(blip, tokens, ids)[:, 0].softmax(-1)[:, 1].tolist()
    out = [replace(with_image[j], score=p, meta={**with_image[j].meta, "search_score": with_image[j].score})
           for j, p in zip(kept, probs)]
    return sorted(out, key=lambda h: -h.score)


def _loaded(model):
    from ..loading import load

    return load(model) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model
