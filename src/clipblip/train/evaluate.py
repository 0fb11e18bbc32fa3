"""Evaluation during training, on the Shapes val split: the objective's loss, zero-shot accuracy (shape and
colour on single-object scenes, count on any) and text-to-image R@1 for models with an ITC space."""

from __future__ import annotations

import torch

from ..data.shapes import COLORS, NUMBERS, SHAPES
from ..data.shapes_records import ShapesRecords
from ..tasks.inputs import image_features, text_features
from ..tasks.zeroshot import class_embeddings
from . import objectives
from .data import Collate

# Prompts in the world's own grammar (the shipped models read only its words).
SHAPE_TEMPLATES = ("a {}.", "a picture of a {}.", "there is a {}.")
COLOR_TEMPLATES = ("{} object.", "a picture of {} object.", "there is {} object.")  # the label brings its article
COUNT_PROMPTS = tuple(f"there {'is' if n == 1 else 'are'} {NUMBERS[n]} object{'' if n == 1 else 's'}."
                      for n in range(1, 5))


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _accuracy(model, images, truth: list, classes, templates) -> float:
    feats = image_features(model, images)[0]
    pred = (feats @ class_embeddings(model, classes, templates).t()).argmax(1)
    return float((pred == torch.tensor([classes.index(t) for t in truth])).float().mean())


def zero_shot(model, shapes: dict, n: int) -> dict:
    """Accuracy of ITC zero-shot classification on Shapes val."""
    kwargs = {k: v for k, v in shapes.items() if k != "n"}
    single = [ShapesRecords("val", n=n, n_objects=1, **kwargs)[i] for i in range(n)]
    scenes = [ShapesRecords("val", n=n, **kwargs)[i] for i in range(n)]
    counts = [s["labels"]["count"] for s in scenes]
    return {"zs_shape": _accuracy(model, [s["image"] for s in single], [s["labels"]["shape"] for s in single],
                                  list(SHAPES), SHAPE_TEMPLATES),
            "zs_color": _accuracy(model, [s["image"] for s in single], [_article(s["labels"]["color"]) for s in single],
                                  [_article(c) for c in COLORS], COLOR_TEMPLATES),
            "zs_count": _accuracy(model, [s["image"] for s in scenes], [COUNT_PROMPTS[c - 1] for c in counts],
                                  list(COUNT_PROMPTS), ("{}",)),
            "t2i_r1": _recall_at_1(model, scenes)}


def _recall_at_1(model, scenes) -> float:
    img = image_features(model, [s["image"] for s in scenes])[0]
    txt = text_features(model, [s["caption"] for s in scenes])
    return float(((txt @ img.t()).argmax(1) == torch.arange(len(scenes))).float().mean())


def val_loss(model, cfg, momentum=None) -> float:
    """The objective on val records, the momentum encoder and queues left untouched."""
    records = ShapesRecords("val", **{**cfg.shapes, "n": cfg.eval_n})
    collate = Collate(model, "vqa" if cfg.objective == "vqa" else model.config.family)
    fn = objectives.OBJECTIVES[cfg.objective]
    device = next(model.parameters()).device
    total, count, size = 0.0, 0, min(cfg.batch_size, 64)
    for start in range(0, len(records), size):
        batch = collate([(records[i], i, 0) for i in range(start, min(start + size, len(records)))])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        ctx = objectives.Context(seed=cfg.seed, momentum=momentum, alpha=cfg.alpha, frozen=True,
                                 label_smoothing=cfg.label_smoothing)
        total += float(sum(fn(model, batch, ctx).values())) * batch["size"]
        count += batch["size"]
    return total / max(count, 1)


def evaluate(model, cfg, momentum=None) -> dict:
    if cfg.data != "shapes" or cfg.eval_n <= 0:
        return {}
    metrics = {"val_loss": val_loss(model, cfg, momentum)}
    if model.config.family == "clip" or "itc" in model.config.parts:
        metrics.update(zero_shot(model, cfg.shapes, cfg.eval_n))
    return metrics
