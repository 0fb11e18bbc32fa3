"""Evaluations on the Shapes world shared by training (val) and `clipblip compare` (test): zero-shot
classification with prompt ensembles in the world's own grammar, and the splits' records."""

from __future__ import annotations

from ..metrics import accuracy, retrieval_ranks
from ..tasks.inputs import image_features, text_features
from ..tasks.zeroshot import class_embeddings
from .shapes import COLORS, NUMBERS, SHAPES
from .shapes_records import ShapesRecords

# Prompts in the world's own grammar (the shipped models read only its words). Colour labels bring their article.
SHAPE_TEMPLATES = ("a {}.", "a picture of a {}.", "there is a {}.")
COLOR_TEMPLATES = ("{} object.", "a picture of {} object.", "there is {} object.")
COUNT_PROMPTS = tuple(f"there {'is' if n == 1 else 'are'} {NUMBERS[n]} object{'' if n == 1 else 's'}."
                      for n in range(1, 5))


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def records(split: str, n: int, seed: int = 0, size: int = 64, n_objects=None) -> list[dict]:
    data = ShapesRecords(split, seed=seed, n=n, size=size, n_objects=n_objects)
    return [data[i] for i in range(n)]


def _right(model, images, truth: list, classes: list, templates) -> list[bool]:
    feats = image_features(model, images)[0]
    pred = (feats @ class_embeddings(model, classes, templates).t()).argmax(1).tolist()
    return [p == classes.index(t) for p, t in zip(pred, truth)]


def zero_shot_outcomes(model, single: list[dict], scenes: list[dict]) -> dict[str, list[bool]]:
    """Per image, whether zero-shot classification in the model's joint space got it right: shape and colour on
    single-object scenes, the object count on any scenes."""
    counts = [COUNT_PROMPTS[s["labels"]["count"] - 1] for s in scenes]
    return {"shape": _right(model, [s["image"] for s in single], [s["labels"]["shape"] for s in single],
                            list(SHAPES), SHAPE_TEMPLATES),
            "color": _right(model, [s["image"] for s in single], [article(s["labels"]["color"]) for s in single],
                            [article(c) for c in COLORS], COLOR_TEMPLATES),
            "count": _right(model, [s["image"] for s in scenes], counts, list(COUNT_PROMPTS), ("{}",))}


def zero_shot(model, single: list[dict], scenes: list[dict]) -> dict:
    """Accuracy per label kind of `zero_shot_outcomes`."""
    return {kind: accuracy(right, [True] * len(right))
            for kind, right in zero_shot_outcomes(model, single, scenes).items()}


def t2i_hits(model, scenes: list[dict]) -> list[bool]:
    """Per scene, whether its first caption retrieves it first among the scenes (text-to-image R@1's outcomes)."""
    img = image_features(model, [s["image"] for s in scenes])[0]
    txt = text_features(model, [s["caption"] for s in scenes])
    return (retrieval_ranks(txt @ img.t(), list(range(len(scenes))))["t2i"] == 0).tolist()


def recall_at_1(model, scenes: list[dict]) -> float:
    """Text-to-image R@1 with each scene's first caption (the quick figure training logs)."""
    hits = t2i_hits(model, scenes)
    return accuracy(hits, [True] * len(hits))
