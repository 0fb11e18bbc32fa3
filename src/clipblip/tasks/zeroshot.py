"""Zero-shot classification: class names in prompt templates, one averaged text embedding per class."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ClipBlipError
from .inputs import image_features, text_features

# Our own small default set: plain photos plus a few renderings, so the ensemble is not tied to one phrasing.
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "a drawing of a {}.",
    "a rendering of a {}.",
)


@torch.no_grad()
def class_embeddings(model, labels, templates=None) -> torch.Tensor:
    """[C, D]: for each label the mean of its normalized template embeddings, normalized again (as in CLIP)."""
    labels = list(labels)
    if not labels:
        raise ClipBlipError("no labels given: pass at least one class name")
    templates = tuple(templates or DEFAULT_TEMPLATES)
    if any("{}" not in t for t in templates):
        raise ClipBlipError("every template needs a '{}' where the label goes, e.g. 'a photo of a {}.'")
    texts = [t.format(label) for label in labels for t in templates]
    feats = text_features(model, texts).view(len(labels), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1)


@torch.no_grad()
def scores(model, image_feats: torch.Tensor, class_feats: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N, C]: softmax over the model's scaled cosine similarities."""
    scale = model.logit_scale.exp().float().cpu()
    return (scale * image_feats @ class_feats.t()).softmax(dim=-1)


def top_labels(probs: torch.Tensor, labels, top_k: int) -> list[list[tuple[str, float]]]:
    values, index = probs.topk(min(top_k, probs.shape[1]), dim=-1)
    return [[(labels[j], float(v)) for v, j in zip(vs, js.tolist())] for vs, js in zip(values, index)]


@torch.no_grad()
def classify(model, images, labels, templates=None, top_k: int = 5, batch_size: int = 32):
    """Top-k (label, probability) for each image. Images: PIL images, paths, or a pixel tensor [B, 3, H, W]."""
    labels = list(labels)
    class_feats = class_embeddings(model, labels, templates)
    feats, _, _ = image_features(model, images, batch_size)
    return top_labels(scores(model, feats, class_feats), labels, top_k)
