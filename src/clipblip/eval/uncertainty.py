"""What each of compare's numbers is worth: 95% intervals from the per-item outcomes behind a rate, and the paired test
of a CLIP-vs-BLIP difference on the same items.

A section keeps its per-item outcomes under "items" (benchmark moves them out of results.json); the `*_ci` functions
give the "ci" tree beside its numbers, `paired` the test of one pair of numbers. Intervals: Wilson for proportions
of independent items (zero-shot, probe pairs, VQA, facts), bootstrap over images for R@K, BLEU and CIDEr (captions
of one image are not independent). Tests: exact McNemar for paired right/wrong outcomes, paired bootstrap over
images for R@K.
"""

from __future__ import annotations

import numpy as np

from .. import metrics, stats

KS = (1, 5, 10)
N_BOOT = 1000


def _wilson(right) -> list[float]:
    right = np.asarray(right, dtype=bool)
    return list(stats.wilson(int(right.sum()), len(right)))


# ---------------------------------------------------------------------------------------------------- retrieval

def retrieval_items(ranks: dict, owner) -> dict:
    """Per-query ranks (metrics.retrieval_ranks) with the image each text belongs to: the unit of resampling."""
    return {"t2i": np.asarray(ranks["t2i"]), "owner": np.asarray(owner), "i2t": np.asarray(ranks["i2t"]),
            "i2t_images": np.asarray(ranks["i2t_images"]), "n_images": int(ranks["shape"][1])}


def _retrieval_stat(items: dict, way: str, k: int):
    """stat(image indices) -> R@k over the queries of those images (resampled images bring all their captions)."""
    n = items["n_images"]
    if way == "t2i":
        hits = np.bincount(items["owner"], weights=items["t2i"] < k, minlength=n)
        count = np.bincount(items["owner"], minlength=n).astype(float)
    else:
        hits, count = np.zeros(n), np.zeros(n)
        hits[items["i2t_images"]] = items["i2t"] < k
        count[items["i2t_images"]] = 1.0
    return lambda idx: float(hits[idx].sum() / max(count[idx].sum(), 1.0))


def retrieval_ci(items: dict, ks=KS) -> dict:
    return {way: {f"r{k}": list(stats.bootstrap(_retrieval_stat(items, way, k), items["n_images"], n_boot=N_BOOT))
                  for k in ks} for way in ("t2i", "i2t")}


# ---------------------------------------------------------------------------------------------------- probe, zero-shot

def probe_ci(items: dict) -> dict:
    correct, types = np.asarray(items["correct"], dtype=bool), np.asarray(items["types"])
    return {"all": _wilson(correct), "per_type": {t: _wilson(correct[types == t]) for t in sorted(set(types))}}


def shares_ci(items: dict) -> dict:
    """The Wilson interval of each named list of right/wrong outcomes (zero-shot per label kind, CapFilt's CLIPs
    per metric)."""
    return {kind: _wilson(right) for kind, right in items.items()}


# ---------------------------------------------------------------------------------------------------- captions, VQA

def caption_ci(hypotheses: list[str], references: list[list[str]], facts: list[dict] | None) -> dict:
    """BLEU-4 (corpus BLEU recomputed on each resample of images) and CIDEr-D (the mean of per-image scores, document
    frequencies from the whole set) by bootstrap over images; the fact shares by Wilson over facts and objects."""
    cider = np.asarray(metrics.cider_d_scores(hypotheses, references))
    out = {"bleu4": list(stats.bootstrap(lambda idx: metrics.bleu4([hypotheses[i] for i in idx],
                                                                   [references[i] for i in idx]),
                                         len(hypotheses), n_boot=200)),
           "cider": list(stats.bootstrap(lambda idx: float(cider[idx].mean()), len(cider), n_boot=N_BOOT))}
    if facts:
        out["facts_true"] = list(stats.wilson(sum(f["true"] for f in facts), sum(f["facts"] for f in facts)))
        out["objects_mentioned"] = list(stats.wilson(sum(f["objects_mentioned"] for f in facts),
                                                     sum(f["objects"] for f in facts)))
    return out


def _mean_ci(scores: np.ndarray) -> list[float]:
    """Wilson when every score is 0 or 1 (one accepted answer), else a bootstrap of the mean (VQA's soft scores)."""
    if np.isin(scores, (0.0, 1.0)).all():
        return _wilson(scores == 1.0)
    return list(stats.bootstrap(lambda idx: float(scores[idx].mean()), len(scores), n_boot=N_BOOT))


def vqa_ci(scores, types) -> dict:
    scores, types = np.asarray(scores, dtype=float), np.asarray(types)
    return {"overall": _mean_ci(scores), "per_type": {t: _mean_ci(scores[types == t]) for t in sorted(set(types))}}


# ---------------------------------------------------------------------------------------------------- paired tests

def _mcnemar(a, b, unit: str) -> dict:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    t = stats.mcnemar(a, b)
    return {"method": "exact McNemar", "n": t["n"], "unit": unit, "diff": t["diff"], "p": t["p"],
            "detect_n": stats.items_to_detect_paired(t["only_a"], t["only_b"], t["n"])}


def _bootstrap_test(a: dict, b: dict, way: str, k: int) -> dict:
    n = a["n_images"]
    t = stats.paired_bootstrap(_retrieval_stat(a, way, k), _retrieval_stat(b, way, k), n, n_boot=N_BOOT)
    return {"method": "paired bootstrap over images", "n": n, "unit": "images", "diff": t["diff"], "p": t["p"],
            "ci": list(t["ci"]),
            "detect_n": stats.items_to_detect_se(t["diff"], t["se"], n)}


def _probe_items(items: dict, keys: tuple):
    """The right/wrong outcomes the probe value at `keys` ("all" or ("per_type", t)) is the mean of."""
    correct, types = np.asarray(items["correct"], dtype=bool), np.asarray(items["types"])
    return correct if keys == ("all",) else correct[types == keys[1]]


def paired(task: str, keys: tuple, a: dict, b: dict) -> dict | None:
    """The test of b's number against a's at results[task][path][*keys], from both sections' items (None where the
    number has no paired test: a cost, or a task without items)."""
    if task == "zero_shot":
        return _mcnemar(a[keys[0]], b[keys[0]], "images")
    if task == "compositional":
        a, b = _probe_items(a, keys), _probe_items(b, keys)
        return _mcnemar(a, b, "probe pairs") if len(a) else None  # an edit type the data has none of
    if task == "retrieval":
        return _bootstrap_test(a, b, keys[0], int(keys[1][1:]))
    if task == "heldout" and keys == ("compositional",):
        return _mcnemar(a["compositional"]["correct"], b["compositional"]["correct"], "probe pairs")
    if task == "heldout" and keys == ("t2i_r1",):
        return _bootstrap_test(a["retrieval"], b["retrieval"], "t2i", 1)
    return None
