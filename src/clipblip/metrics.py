"""The metrics of the `clipblip compare` report, as plain functions over tensors and lists.

Retrieval R@K (COCO protocol), corpus BLEU-4 (sacrebleu), CIDEr-D (our own port of coco-caption's scorer, checked
against pycocoevalcap in the tests), VQA accuracy, pairwise accuracy of the compositional probe, plain accuracy,
and how well a filter removes noisy captions (ROC/PR, calibration: CapFilt's filter).
Every score is a fraction in [0, 1] except CIDEr-D, which keeps coco-caption's x10 scale (0..10, usually 0..2).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np
import torch

from .errors import ClipBlipError


def _require_pairs(a, b, what: str) -> None:
    # every metric below pairs two sequences item by item; a silent zip() would drop the tail
    if len(a) != len(b):
        raise ClipBlipError(f"{what}: got {len(a)} and {len(b)} items; pass one of each per example.")
    if len(a) == 0:
        raise ClipBlipError(f"{what}: nothing to score; pass at least one example.")


# ---------------------------------------------------------------------------------------------------- retrieval

def retrieval_recall(sim, text_to_image, ks=(1, 5, 10)) -> dict:
    """{"t2i": {"r1": .., "r5": .., "r10": ..}, "i2t": {...}} from a [T, I] text x image similarity matrix.

    `text_to_image[t]` is the image of text t; an image may have several texts (COCO's 5 captions). t2i R@K: share
    of texts whose image is among their top K images. i2t R@K: share of images with ANY of their texts among their
    top K texts; images without a text (distractors) count for t2i only. K above the gallery size is clipped.
    Ties count against the model (a constant matrix scores R@1 = 0, not 1), so a degenerate model cannot look good.
    """
    return recall_at(retrieval_ranks(sim, text_to_image), ks)


def recall_at(ranks: dict, ks=(1, 5, 10)) -> dict:
    """`retrieval_recall` from the ranks `retrieval_ranks` gave (computed once, read by several consumers)."""
    if any(int(k) < 1 for k in ks):
        raise ClipBlipError(f"retrieval_recall: every K must be >= 1, got {tuple(ks)}.")
    n_texts, n_images = ranks["shape"]
    return {"t2i": _recall_at(ranks["t2i"], ks, n_images), "i2t": _recall_at(ranks["i2t"], ks, n_texts)}


def retrieval_ranks(sim, text_to_image) -> dict:
    """Each query's rank (0 = first place; ties count against it), as `retrieval_recall` reads them: "t2i" per
    text, "i2t" per image that has a text ("i2t_images": which images those are), "shape": (texts, images).
    R@K of one query is rank < K; the per-query hits are what the report's intervals and paired tests resample."""
    sim = torch.as_tensor(sim, dtype=torch.float64)
    gt = torch.as_tensor(text_to_image, dtype=torch.long).reshape(-1)
    if sim.ndim != 2:
        raise ClipBlipError(f"retrieval_recall: sim must be a [texts, images] matrix, got shape {tuple(sim.shape)}.")
    _require_pairs(sim, gt, "retrieval_recall (sim rows, text_to_image)")
    n_texts, n_images = sim.shape
    if gt.min() < 0 or gt.max() >= n_images:
        raise ClipBlipError(f"retrieval_recall: text_to_image holds indices outside 0..{n_images - 1}.")
    rows = torch.arange(n_texts)
    is_gt = torch.zeros(n_texts, n_images, dtype=torch.bool)
    is_gt[rows, gt] = True
    # rank = how many wrong candidates score at least as high as the right one (0 = first place)
    t2i_rank = ((sim >= sim[rows, gt][:, None]) & ~is_gt).sum(1)
    best = sim.masked_fill(~is_gt, float("-inf")).max(0).values                 # [I]: best score of own texts
    has_text = is_gt.any(0)
    i2t_rank = ((sim >= best[None, :]) & ~is_gt).sum(0)[has_text]
    return {"t2i": t2i_rank, "i2t": i2t_rank, "i2t_images": torch.nonzero(has_text).reshape(-1),
            "shape": (n_texts, n_images)}


def _recall_at(rank: torch.Tensor, ks, size: int) -> dict:
    return {f"r{int(k)}": float((rank < min(int(k), size)).double().mean()) for k in ks}


# ---------------------------------------------------------------------------------------------------- BLEU-4

def bleu4(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus BLEU-4 in [0, 1] (sacrebleu's 0..100 divided by 100): lowercased, tokenize="13a", sacrebleu's default
    exponential smoothing and closest-reference brevity penalty.

    References may differ in count per hypothesis: shorter lists are padded with None, which sacrebleu reads as
    "no reference here" (its documented way to take a variable number of references per segment).
    """
    import sacrebleu  # the eval extra, imported late: `import clipblip` and the core commands never need it

    _require_pairs(hypotheses, references, "bleu4 (hypotheses, references)")
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(len(refs) == 0 for refs in references):
        raise ClipBlipError("bleu4: every hypothesis needs at least one reference.")
    width = max(len(refs) for refs in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    metric = sacrebleu.BLEU(lowercase=True, tokenize="13a")
    return metric.corpus_score(list(hypotheses), streams).score / 100.0


# ---------------------------------------------------------------------------------------------------- CIDEr-D

# A word, or an English clitic glued to one ("dog's" -> "dog", "'s", as the PTB tokenizer splits it); every other
# punctuation mark is split off and dropped, as coco-caption's PTBTokenizer drops . , ? ! : ; - and quotes.
_CAPTION_TOKEN = re.compile(r"\w+|(?<=\w)'\w+")


def caption_tokens(text: str) -> list[str]:
    """Lowercase word tokens of a caption with punctuation removed: a Java-free stand-in for coco-caption's
    PTBTokenizer. Tokenization is the only place our CIDEr-D can differ from published coco-caption numbers."""
    return _CAPTION_TOKEN.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1))


def _tfidf(counts: Counter, doc_freq: Counter, log_n_docs: float, n: int):
    """Per order k: ({ngram: tf * idf}, L2 norm), and the caption's length in words."""
    vecs, norms = [{} for _ in range(n)], [0.0] * n
    for gram, tf in counts.items():
        # an n-gram absent from every reference set gets df 1, as in coco-caption
        w = tf * (log_n_docs - math.log(max(1.0, doc_freq[gram])))
        vecs[len(gram) - 1][gram] = w
        norms[len(gram) - 1] += w * w
    # coco-caption counts bigrams (words - 1) as the length: the same difference between two non-empty captions,
    # and a pair with an empty caption scores 0 whatever its penalty, so counting words is exactly equivalent
    length = sum(tf for gram, tf in counts.items() if len(gram) == 1)
    return vecs, [math.sqrt(x) for x in norms], length


def _pair_score(hyp, ref, n: int, sigma: float) -> float:
    """Sum over orders of the clipped cosine of hypothesis and one reference, times the gaussian length penalty."""
    (h_vec, h_norm, h_len), (r_vec, r_norm, r_len) = hyp, ref
    penalty = math.exp(-((h_len - r_len) ** 2) / (2 * sigma ** 2))
    total = 0.0
    for k in range(n):
        # CIDEr-D clipping: a hypothesis n-gram counts at most as much as the reference has of it
        dot = sum(min(w, r_vec[k].get(g, 0.0)) * r_vec[k].get(g, 0.0) for g, w in h_vec[k].items())
        if h_norm[k] != 0 and r_norm[k] != 0:
            dot /= h_norm[k] * r_norm[k]
        total += dot * penalty
    return total


def cider_d_scores(hypotheses: list[str], references: list[list[str]], n: int = 4,
                   sigma: float = 6.0) -> list[float]:
    """Per-caption CIDEr-D, exactly coco-caption's `CiderScorer` (pycocoevalcap.cider) on `caption_tokens`.

    Document frequencies come from the references of this evaluated set (one document per caption's reference
    list), idf = log(#captions) - log(df); each score is the mean over n-gram orders 1..n of the clipped tf-idf
    cosine with the gaussian length penalty (sigma), averaged over the references and multiplied by 10.
    """
    _require_pairs(hypotheses, references, "cider_d (hypotheses, references)")
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(len(refs) == 0 for refs in references):
        raise ClipBlipError("cider_d: every hypothesis needs at least one reference.")
    ref_counts = [[_ngrams(caption_tokens(r), n) for r in refs] for refs in references]
    doc_freq = Counter(g for refs in ref_counts for g in set().union(*refs))
    log_n_docs = math.log(len(references))
    scores = []
    for hyp, refs in zip(hypotheses, ref_counts):
        h = _tfidf(_ngrams(caption_tokens(hyp), n), doc_freq, log_n_docs, n)
        total = sum(_pair_score(h, _tfidf(r, doc_freq, log_n_docs, n), n, sigma) for r in refs)
        scores.append(total / n / len(refs) * 10.0)
    return scores


def cider_d(hypotheses: list[str], references: list[list[str]]) -> float:
    """Corpus CIDEr-D (coco-caption scale, x10): the mean of `cider_d_scores`."""
    scores = cider_d_scores(hypotheses, references)
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------------------------------- VQA

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCT = re.compile(r"[\s.,;:!?]+$")


def normalize_answer(text: str) -> str:
    """Lowercase, collapse whitespace, strip surrounding space and trailing punctuation ("A  Dog." -> "a dog").
    Simpler than the official VQA normalizer (no number words, articles or contractions): our numbers compare
    models with each other, not with the leaderboard."""
    return _TRAILING_PUNCT.sub("", _SPACES.sub(" ", str(text).lower()).strip())


def _soft_score(pred: str, accepted: list[str]) -> float:
    """The official VQA accuracy: min(#humans who gave the answer / 3, 1), averaged over the leave-one-out
    subsets of the human answers (with 10 answers, the 10 subsets of 9, as the VQA evaluation script does)."""
    hits = [a == pred for a in accepted]
    matched = sum(hits)
    return sum(min((matched - h) / 3.0, 1.0) for h in hits) / len(hits)


def vqa_accuracy(predictions: list[str], answers: list[list[str]], types: list[str] | None = None,
                 soft: bool = False) -> dict:
    """{"overall": acc, "per_type": {type: acc}, "n": #questions} after `normalize_answer` on both sides.

    Hard (default): a prediction is right when it equals any accepted answer. soft=True: questions with >= 3
    human answers (repeats kept: they are votes) score the official VQA accuracy; others stay exact match.
    """
    scores = vqa_scores(predictions, answers, soft)
    overall, per_type = _mean_by_type(scores, types, "vqa_accuracy")
    return {"overall": overall, "per_type": per_type, "n": len(scores)}


def vqa_scores(predictions: list[str], answers: list[list[str]], soft: bool = False) -> list[float]:
    """Each question's score as `vqa_accuracy` counts it (1.0 or 0.0, or the soft VQA score)."""
    _require_pairs(predictions, answers, "vqa_accuracy (predictions, answers)")
    answers = [[a] if isinstance(a, str) else list(a) for a in answers]
    if any(len(a) == 0 for a in answers):
        raise ClipBlipError("vqa_accuracy: every question needs at least one accepted answer.")
    scores = []
    for pred, accepted in zip(predictions, answers):
        pred, accepted = normalize_answer(pred), [normalize_answer(a) for a in accepted]
        use_soft = soft and len(accepted) >= 3
        scores.append(_soft_score(pred, accepted) if use_soft else float(pred in accepted))
    return scores


def _mean_by_type(scores: list[float], types, what: str) -> tuple[float, dict]:
    if types is None:
        return sum(scores) / len(scores), {}
    _require_pairs(scores, types, f"{what} (scores, types)")
    groups = defaultdict(list)
    for s, t in zip(scores, types):
        groups[t].append(s)
    per_type = {t: sum(v) / len(v) for t, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}
    return sum(scores) / len(scores), per_type


# ---------------------------------------------------------------------------------------------------- probes

def pairwise_accuracy(pos_scores, neg_scores, types=None) -> dict:
    """{"all": acc, "per_type": {edit type: acc}, "n": #pairs}: share of pairs where the true caption scores
    strictly above its hard negative. Ties count as wrong, so a model that ignores the edit scores 0, not 0.5."""
    pos = torch.as_tensor(pos_scores, dtype=torch.float64).reshape(-1)
    neg = torch.as_tensor(neg_scores, dtype=torch.float64).reshape(-1)
    _require_pairs(pos, neg, "pairwise_accuracy (pos_scores, neg_scores)")
    wins = (pos > neg).double().tolist()
    overall, per_type = _mean_by_type(wins, list(types) if types is not None else None, "pairwise_accuracy")
    return {"all": overall, "per_type": per_type, "n": len(wins)}


def accuracy(pred, truth) -> float:
    """Share of positions where pred equals truth (class ids as lists or tensors, or any comparable labels)."""
    if torch.is_tensor(pred) or torch.is_tensor(truth):
        pred, truth = torch.as_tensor(pred).reshape(-1), torch.as_tensor(truth).reshape(-1)
        _require_pairs(pred, truth, "accuracy (pred, truth)")
        return float((pred == truth).double().mean())
    _require_pairs(pred, truth, "accuracy (pred, truth)")
    return sum(p == t for p, t in zip(pred, truth)) / len(pred)


def filter_quality(labelled, threshold: float) -> dict | None:
    """How well CapFilt's filter removes noisy originals, from (ITM score, noise label) pairs: removal precision and
    recall overall and per noise type (each type against the clean captions) with the counts behind them, and ROC/PR
    curves with AUC. "Positive" is a noisy caption; the filter removes a caption when its score is below
    `threshold`."""
    if not labelled:
        return None
    scores = np.array([s for s, _ in labelled])
    kinds = np.array([n for _, n in labelled])
    clean = kinds == "clean"
    if clean.all() or not clean.any():
        return None
    out = {"threshold": threshold, "n": int(len(kinds)), "n_clean": int(clean.sum()),
           "all": _removal(scores, ~clean, clean, threshold)}
    for kind in sorted(set(kinds.tolist()) - {"clean"}):
        out[kind] = _removal(scores, kinds == kind, clean, threshold)
    return out


def _removal(scores, noisy, clean, threshold) -> dict:
    removed = scores < threshold
    tp, fp = int((removed & noisy).sum()), int((removed & clean).sum())
    fpr, tpr, prec, rec = curves(scores[noisy | clean], noisy[noisy | clean])
    n_noisy, n_clean = int(noisy.sum()), int(clean.sum())
    return {"n": n_noisy, "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / n_noisy,
            "clean_removed": fp / n_clean, "counts": {"noisy_removed": tp, "clean_removed": fp, "clean": n_clean},
            "roc_auc": float(np.trapezoid(tpr, fpr)),
            "pr_auc": float(np.trapezoid(prec, rec)),
            "roc": {"fpr": _thin(fpr), "tpr": _thin(tpr)}, "pr": {"recall": _thin(rec), "precision": _thin(prec)}}


def curves(scores: np.ndarray, positive: np.ndarray):
    """ROC (fpr, tpr) and PR (precision, recall) of "remove when score < t" over every threshold t."""
    order = np.argsort(scores, kind="stable")  # lowest score first = removed first
    pos = positive[order].astype(np.float64)
    tp, fp = np.cumsum(pos), np.cumsum(1 - pos)
    n_pos, n_neg = max(pos.sum(), 1), max(len(pos) - pos.sum(), 1)
    tpr, fpr = np.concatenate([[0], tp / n_pos]), np.concatenate([[0], fp / n_neg])
    rec = tpr
    prec = np.concatenate([[1], tp / np.maximum(tp + fp, 1)])
    return fpr, tpr, prec, rec


def _thin(x: np.ndarray, n: int = 101) -> list[float]:
    """At most n points of a curve (for JSON), keeping both ends."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int))
    return [round(float(v), 5) for v in x[idx]]


def calibrate(labelled) -> float:
    """The threshold that maximises TPR - FPR (Youden's J) of removing noisy captions, from (score, noise)."""
    scores = np.array([s for s, _ in labelled])
    noisy = np.array([n != "clean" for _, n in labelled])
    if noisy.all() or not noisy.any():
        raise ClipBlipError("calibration needs both clean and noisy captions in the labelled set")
    cands = np.unique(scores)
    best = max(cands, key=lambda t: (scores[noisy] < t).mean() - (scores[~noisy] < t).mean())
    return float(best)
