"""What a precision costs in accuracy: the same model at fp32 and at bf16 or int8, on the same inputs.

The contract (issue 13; tested in tests/runtime/test_precision_contract.py, measured for the README by
bench/bench_precision.py):
- embeddings: mean cosine to fp32 >= 0.999 (bf16), >= 0.99 (int8);
- zero-shot top-1 agreement with fp32 >= 99%; text-to-image R@1 within 1 point of fp32;
- greedy captions identical to fp32 for >= 90% of images; caption facts true within 1 point; VQA within 1 point.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.shapes import COLORS, SHAPES, score_caption
from ..data.shapes_eval import COLOR_TEMPLATES, SHAPE_TEMPLATES, article
from ..generate import GenerationConfig
from ..metrics import retrieval_recall
from ..tasks.caption import captions
from ..tasks.inputs import image_features, text_features
from ..tasks.vqa import answer
from ..tasks.zeroshot import class_embeddings

CONTRACT = {"bf16": {"cosine": 0.999}, "int8": {"cosine": 0.99}}
AGREEMENT, POINTS, SAME_CAPTIONS = 0.99, 0.01, 0.90


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine similarity of matching rows."""
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1).mean())


def clip_side(model, single: list[dict], scenes: list[dict]) -> dict:
    """What the contract compares for an embedding model: features, zero-shot predictions, text-to-image R@1."""
    img = image_features(model, [s["image"] for s in single + scenes])[0]
    txt = text_features(model, [s["caption"] for s in scenes])
    one = img[:len(single)]
    preds = []
    for classes, templates in ((list(SHAPES), SHAPE_TEMPLATES), ([article(c) for c in COLORS], COLOR_TEMPLATES)):
        preds.append((one @ class_embeddings(model, classes, templates).t()).argmax(1))
    gallery = img[len(single):]
    r1 = retrieval_recall(txt @ gallery.t(), list(range(len(scenes))), ks=(1,))["t2i"]["r1"]
    return {"image": img, "text": txt, "predictions": torch.cat(preds), "r1": r1}


def caption_side(blip, scenes: list[dict]) -> dict:
    """Greedy captions and the share of their facts that are true."""
    t = blip.config.text
    cfg = GenerationConfig(max_new_tokens=30, eos_id=t.sep_id, pad_id=t.pad_id)
    out = [text for _, text in captions(blip, [s["image"] for s in scenes], cfg)]
    facts = [score_caption(s["scene"], text) for s, text in zip(scenes, out)]
    return {"captions": out, "facts_true": sum(f["true"] for f in facts) / max(sum(f["facts"] for f in facts), 1)}


def vqa_side(vqa, scenes: list[dict]) -> dict:
    qs = [(s["image"], q["question"], q["answer"]) for s in scenes for q in s["vqa"]]
    got = answer(vqa, [q[0] for q in qs], [q[1] for q in qs])
    return {"accuracy": sum(g == q[2] for g, q in zip(got, qs)) / len(qs), "n": len(qs)}


def compare_clip(ref: dict, low: dict) -> dict:
    return {"image_cosine": cosine(ref["image"], low["image"]), "text_cosine": cosine(ref["text"], low["text"]),
            "zero_shot_agreement": float((ref["predictions"] == low["predictions"]).float().mean()),
            "r1_fp32": ref["r1"], "r1": low["r1"]}


def compare_captions(ref: dict, low: dict) -> dict:
    same = sum(a == b for a, b in zip(ref["captions"], low["captions"])) / len(ref["captions"])
    return {"captions_identical": same, "facts_true_fp32": ref["facts_true"], "facts_true": low["facts_true"]}


def verdicts(figures: dict, precision: str) -> dict[str, bool]:
    """Each clause of the contract that `figures` (the compare_* results of one model) can be judged on."""
    out = {}
    if "image_cosine" in figures:
        floor = CONTRACT[precision]["cosine"]
        out["embeddings"] = min(figures["image_cosine"], figures["text_cosine"]) >= floor
    if "zero_shot_agreement" in figures:
        out["zero_shot"] = figures["zero_shot_agreement"] >= AGREEMENT
        out["r1"] = abs(figures["r1"] - figures["r1_fp32"]) <= POINTS + 1e-9
    if "captions_identical" in figures:
        out["captions"] = figures["captions_identical"] >= SAME_CAPTIONS
        out["facts"] = abs(figures["facts_true"] - figures["facts_true_fp32"]) <= POINTS + 1e-9
    if "vqa" in figures:
        out["vqa"] = abs(figures["vqa"] - figures["vqa_fp32"]) <= POINTS + 1e-9
    return out
