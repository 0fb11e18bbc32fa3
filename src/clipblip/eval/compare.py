"""`clipblip compare`: CLIP and BLIP measured side by side on the same data.

Every section is a function (model(s), records) -> plain numbers; `compare` runs the ones the given models and
data allow and returns the results dict that `eval/report.py` writes. Paths: "clip" (CLIP's embeddings),
"blip_itc" (BLIP's unimodal ITC embeddings), "blip_itm" (BLIP's ITM head: the probe's scores, and retrieval
reranked from an ITC shortlist).

Each section's dict carries "ci", the 95% interval of each of its rates in the same layout (eval/uncertainty.py),
and "items", the per-item outcomes behind them, which the paired tests read; benchmark keeps "items" out of
results.json.
"""

from __future__ import annotations

import torch

from .. import metrics
from ..data.shapes import score_caption
from ..data.shapes_eval import zero_shot_outcomes
from ..generate import GenerationConfig
from ..tasks.caption import captions as generate_captions
from ..tasks.inputs import image_features, text_features
from ..tasks.itm import image_tokens, itm_scores, rerank_image_to_text, rerank_text_to_image
from ..tasks.vqa import answer
from . import uncertainty as U

SHORTLIST = 16  # BLIP's ITM rerank looks at the ITC top 16


def _flat_captions(recs: list[dict]) -> tuple[list[str], list[int]]:
    texts, owner = [], []
    for i, r in enumerate(recs):
        texts += r["captions"]
        owner += [i] * len(r["captions"])
    return texts, owner


def _embed(model, recs: list[dict], texts: list[str]):
    return image_features(model, [r["image"] for r in recs])[0], text_features(model, texts)


def _scored(ranks: dict, owner: list[int]) -> dict:
    """R@1/5/10 both ways from each query's rank, with their intervals and the per-query items."""
    items = U.retrieval_items(ranks, owner)
    return {**metrics.recall_at(ranks), "ci": U.retrieval_ci(items), "items": items}


def retrieval(model, recs: list[dict]) -> dict:
    """R@1/5/10 in both directions over every caption of every image, in the joint space."""
    texts, owner = _flat_captions(recs)
    img, txt = _embed(model, recs, texts)
    return _scored(metrics.retrieval_ranks(txt @ img.t(), owner), owner)


def _reranked(sim: torch.Tensor, ranked: list[list[tuple[int, float]]], transpose: bool) -> torch.Tensor:
    """Scores that order each query's ITM-reranked shortlist first (by ITM + ITC), then the rest by ITC."""
    out = sim.t().clone() if transpose else sim.clone()
    for q, rows in enumerate(ranked):
        for row, score in rows:
            out[q, row] = 1e4 + score
    return out.t() if transpose else out


@torch.no_grad()
def retrieval_itm(blip, recs: list[dict]) -> dict:
    """BLIP's retrieval evaluation: the ITC top-16 of each query reranked by ITM + ITC."""
    texts, owner = _flat_captions(recs)
    tokens, img, _ = image_tokens(blip, [r["image"] for r in recs])
    sim = text_features(blip, texts) @ img.t().cpu()
    t2i = rerank_text_to_image(blip, texts, tokens, img, top_k=SHORTLIST, shortlist=SHORTLIST)
    i2t = rerank_image_to_text(blip, tokens, img, texts, top_k=SHORTLIST, shortlist=SHORTLIST)
    t2i_scores = _reranked(sim, t2i, transpose=False)
    i2t_scores = _reranked(sim, i2t, transpose=True)
    # each direction ranked by its own reranked scores
    return _scored({**metrics.retrieval_ranks(i2t_scores, owner),
                    "t2i": metrics.retrieval_ranks(t2i_scores, owner)["t2i"]}, owner)


def _probe_pairs(recs: list[dict]) -> list[tuple[int, str, str, str]]:
    """(image index, true caption, its minimal-edit negative, edit type) for every negative of every caption."""
    return [(i, cap, neg["text"], neg["type"]) for i, r in enumerate(recs)
            for cap, negs in zip(r["captions"], r["negatives"]) for neg in negs]


def compositional(model, recs: list[dict]) -> dict:
    """Share of (caption, hard negative) pairs where the image is closer to the true caption (joint space)."""
    pairs = _probe_pairs(recs)
    img = image_features(model, [r["image"] for r in recs])[0]
    pos = text_features(model, [p[1] for p in pairs])
    neg = text_features(model, [p[2] for p in pairs])
    rows = img[[p[0] for p in pairs]]
    return _probe((rows * pos).sum(1), (rows * neg).sum(1), [p[3] for p in pairs])


def _probe(pos, neg, types: list[str]) -> dict:
    items = {"correct": (pos > neg).tolist(), "types": types}
    return {**metrics.pairwise_accuracy(pos, neg, types), "ci": U.probe_ci(items), "items": items}


@torch.no_grad()
def compositional_itm(blip, recs: list[dict]) -> dict:
    """The same pairs scored by BLIP's ITM match logit: each image's captions and negatives in one batch."""
    pairs = _probe_pairs(recs)
    tokens, _, _ = image_tokens(blip, [r["image"] for r in recs])
    device = tokens.device
    pos, neg = torch.empty(len(pairs)), torch.empty(len(pairs))
    by_image: dict[int, list[int]] = {}
    for k, p in enumerate(pairs):
        by_image.setdefault(p[0], []).append(k)
    for i, ks in by_image.items():
        texts = [pairs[k][1] for k in ks] + [pairs[k][2] for k in ks]
        ids = blip.tokenize(texts, first="enc").to(device)
        logits = itm_scores(blip, tokens[i:i + 1], ids)[0, :, 1].cpu()
        pos[ks], neg[ks] = logits[: len(ks)], logits[len(ks):]
    return _probe(pos, neg, [p[3] for p in pairs])


def heldout(model, recs: list[dict], itm: bool = False) -> dict:
    """Colour-shape pairs never seen in training: the probe and text-to-image R@1 on test_heldout."""
    probe = compositional_itm(model, recs) if itm else compositional(model, recs)
    rec = retrieval_itm(model, recs) if itm else retrieval(model, recs)
    return {"compositional": probe["all"], "t2i_r1": rec["t2i"]["r1"],
            "ci": {"compositional": probe["ci"]["all"], "t2i_r1": rec["ci"]["t2i"]["r1"]},
            "items": {"compositional": probe["items"], "retrieval": rec["items"]}}


def zero_shot(model, single: list[dict], scenes: list[dict]) -> dict:
    """Zero-shot accuracy per label kind (data/shapes_eval.py), with its intervals and per-image outcomes."""
    items = zero_shot_outcomes(model, single, scenes)
    return {**{k: sum(v) / len(v) for k, v in items.items()}, "ci": U.shares_ci(items), "items": items}


def captioning(blip, recs: list[dict], num_beams: int = 3) -> dict:
    """BLEU-4 and CIDEr-D against the true captions; on Shapes, the captions read back with the world's parser
    too: the share of stated facts that are true and the share of objects mentioned."""
    cfg = GenerationConfig(max_new_tokens=30, num_beams=num_beams, eos_id=blip.config.text.sep_id,
                           pad_id=blip.config.text.pad_id)
    out = [text for _, text in generate_captions(blip, [r["image"] for r in recs], cfg)]
    refs = [r.get("captions") or [r["caption"]] for r in recs]
    result = {"bleu4": metrics.bleu4(out, refs), "cider": metrics.cider_d(out, refs), "n": len(recs)}
    facts = None
    if all("scene" in r for r in recs):
        facts = [score_caption(r["scene"], text) for r, text in zip(recs, out)]
        result["facts_true"] = sum(f["true"] for f in facts) / max(sum(f["facts"] for f in facts), 1)
        result["objects_mentioned"] = (sum(f["objects_mentioned"] for f in facts)
                                       / max(sum(f["objects"] for f in facts), 1))
    return {**result, "ci": U.caption_ci(out, refs, facts), "captions": out}


def shapes_questions(recs: list[dict]) -> list[dict]:
    """The Shapes records' questions as VQA records (one answer each, typed)."""
    return [{"image": r["image"], "question": q["question"], "answers": [q["answer"]], "type": q["type"]}
            for r in recs for q in r["vqa"]]


def vqa(blip, questions: list[dict], candidates: list[str] | None = None) -> dict:
    """Accuracy per question type: answers generated (beam 3), and ranked among `candidates` (default: every
    answer of the set; on Shapes, the world's closed answer set)."""
    images, texts = [q["image"] for q in questions], [q["question"] for q in questions]
    truth, types = [q["answers"] for q in questions], [q.get("type", "all") for q in questions]
    candidates = candidates or sorted({a for q in questions for a in q["answers"]})
    generated = answer(blip, images, texts)
    ranked = [r[0][0] for r in answer(blip, images, texts, candidates=candidates)]
    return {**{mode: {**metrics.vqa_accuracy(pred, truth, types),
                      "ci": U.vqa_ci(metrics.vqa_scores(pred, truth), types)}
               for mode, pred in (("generate", generated), ("rank", ranked))}, "answers": generated}
