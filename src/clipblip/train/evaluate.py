"""Evaluation during training, on the Shapes val split: the objective's loss, zero-shot accuracy (shape and
colour on single-object scenes, count on any) and text-to-image R@1 for models with an ITC space."""

from __future__ import annotations

from ..data.shapes_eval import recall_at_1, records, zero_shot
from ..data.shapes_records import ShapesRecords
from . import objectives
from .data import Collate, to_device


def shapes_metrics(model, shapes: dict, n: int) -> dict:
    """Zero-shot accuracy and text-to-image R@1 on Shapes val, for models with an ITC space."""
    kwargs = {k: v for k, v in shapes.items() if k != "n"}
    scenes = records("val", n, **kwargs)
    zs = zero_shot(model, records("val", n, n_objects=1, **kwargs), scenes)
    return {**{f"zs_{k}": v for k, v in zs.items()}, "t2i_r1": recall_at_1(model, scenes)}


def val_loss(model, cfg, momentum=None) -> float:
    """The objective on val records, the momentum encoder and queues left untouched."""
    data = ShapesRecords("val", **{**cfg.shapes, "n": cfg.eval_n})
    spec = objectives.get(cfg.objective)
    collate = Collate(model, spec.collate, edits=spec.edits)
    device = model.device
    total, count, size = 0.0, 0, min(cfg.batch_size, 64)
    for start in range(0, len(data), size):
        batch = collate([(data[i], i, 0) for i in range(start, min(start + size, len(data)))])
        batch = to_device(batch, device)
        ctx = objectives.Context(seed=cfg.seed, momentum=momentum, alpha=cfg.alpha, frozen=True,
                                 label_smoothing=cfg.label_smoothing)
        total += float(sum(spec.loss(model, batch, ctx).values())) * batch["size"]
        count += batch["size"]
    return total / max(count, 1)


def evaluate(model, cfg, momentum=None) -> dict:
    if cfg.data != "shapes" or cfg.eval_n <= 0:
        return {}
    metrics = {"val_loss": val_loss(model, cfg, momentum)}
    if model.config.family == "clip" or "itc" in model.config.parts:
        metrics.update(shapes_metrics(model, cfg.shapes, cfg.eval_n))
    return metrics
