"""Retrieval over embeddings held in memory: exact top-k by cosine similarity, in chunks so that memory stays
bounded (queries x chunk scores at a time) however large the gallery."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .inputs import image_features, text_features


def topk(queries: torch.Tensor, gallery: torch.Tensor, k: int, chunk: int = 16384,
         query_chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and indices [Q, k'] of the most similar gallery rows (k' = min(k, N)); inputs are normalized here."""
    queries, gallery = F.normalize(queries.float(), dim=-1), F.normalize(gallery.float(), dim=-1)
    k = min(k, gallery.shape[0])
    all_scores, all_index = [], []
    for q in queries.split(query_chunk):
        best_s = torch.full((q.shape[0], 0), float("-inf"))
        best_i = torch.empty((q.shape[0], 0), dtype=torch.long)
        for start in range(0, gallery.shape[0], chunk):
            s = q @ gallery[start:start + chunk].t()
            s, i = s.topk(min(k, s.shape[1]), dim=1)
            # merge this chunk's best with the running best
            merged = torch.cat([best_s, s], 1)
            best_s, order = merged.topk(min(k, merged.shape[1]), dim=1)
            best_i = torch.cat([best_i, i + start], 1).gather(1, order)
        all_scores.append(best_s)
        all_index.append(best_i)
    return torch.cat(all_scores), torch.cat(all_index)


def text_to_image(model, texts, gallery_feats: torch.Tensor, top_k: int = 5):
    """For each text, [(image row, score)] of the top-k images in `gallery_feats` (from `image_features`)."""
    s, i = topk(text_features(model, texts), gallery_feats, top_k)
    return [[(int(j), float(v)) for v, j in zip(vs, js)] for vs, js in zip(s, i)]


def image_to_text(model, images, text_feats: torch.Tensor, top_k: int = 5):
    """For each image, [(text row, score)] of the top-k texts in `text_feats` (from `text_features`)."""
    feats, _, _ = image_features(model, images)
    s, i = topk(feats, text_feats, top_k)
    return [[(int(j), float(v)) for v, j in zip(vs, js)] for vs, js in zip(s, i)]

