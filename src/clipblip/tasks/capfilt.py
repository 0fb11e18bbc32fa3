"""CapFilt (BLIP, section 3.3), the inference: caption an image and filter its captions.

For every image a captioner (a BLIP decoder) writes synthetic captions by nucleus sampling; a filter (a BLIP ITM
head) scores the original captions and the synthetic ones, and a caption is kept when its match probability is
at least the threshold (the paper keeps what ITM calls a match: 0.5). The resumable job over a dataset is
`data/capfilt.py`; the filter's quality metrics (ROC/PR, calibration) are in `metrics.py`.

Each kept or dropped caption is a candidate {"text", "source": "original" | "synthetic", "score", "kept"}, plus
"noise" when the input labels its original captions (the Shapes web split does), which `labelled` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ClipBlipError
from ..generate import GenerationConfig, generate
from .caption import prompt_ids

REPLACED_FIELDS = ("image", "caption", "captions", "noise", "negatives")  # the output record sets its own


@dataclass
class CapFiltConfig:
    n_synthetic: int = 1  # synthetic captions per image (BLIP: 1)
    top_p: float = 0.9  # nucleus sampling, as BLIP's captioner
    max_new_tokens: int = 20
    min_new_tokens: int = 3
    prompt: str | None = None  # e.g. "a picture of" for a captioner fine-tuned with that prompt
    threshold: float = 0.5  # keep a caption when ITM match probability >= threshold
    part_size: int = 256
    batch_size: int = 32
    seed: int = 0
    workers: int | None = None  # decoding threads (None: inputs.default_workers()); no setting of the output

    def __post_init__(self):
        if self.n_synthetic < 0:
            raise ClipBlipError(f"n_synthetic must be >= 0, got {self.n_synthetic}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ClipBlipError(f"the threshold is a match probability in [0, 1], got {self.threshold}")
        if self.part_size < 1 or self.batch_size < 1:
            raise ClipBlipError("part_size and batch_size must be at least 1")


# ------------------------------------------------------------------------------------------------ one part


@torch.no_grad()
def synthetic_captions(captioner, tokens: torch.Tensor, cfg: CapFiltConfig, seed: int) -> list[list[str]]:
    """`cfg.n_synthetic` nucleus-sampled captions per image of `tokens` (the captioner's image tokens [B, 1 + P, W]),
    reproducible from `seed`."""
    start = prompt_ids(captioner, cfg.prompt).to(tokens.device).expand(len(tokens), -1)
    out = [[] for _ in range(len(tokens))]
    for j in range(cfg.n_synthetic):
        gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens,
                               top_p=cfg.top_p, seed=seed * 1_000_003 + j, eos_id=captioner.config.text.sep_id,
                               pad_id=captioner.config.text.pad_id)
        for i, ids in enumerate(generate(captioner.decoder(tokens), start, gen)):
            out[i].append(captioner.tokenizer.decode(ids).strip())
    return out


@torch.no_grad()
def match_scores(filt, tokens: torch.Tensor, texts: list[list[str]], chunk: int = 256) -> list[list[float]]:
    """ITM match probability of each image (row of `tokens`, the filter's image tokens) with each of its own texts."""
    device = tokens.device
    pairs = [(i, t) for i, row in enumerate(texts) for t in row]
    probs = []
    for s in range(0, len(pairs), chunk):
        rows, batch = zip(*pairs[s:s + chunk])
        ids = filt.tokenize(list(batch), first="enc").to(device)
        kv = filt.image_kv(tokens[list(rows)])
        probs += filt.itm_logits(ids, kv).float().softmax(-1)[:, 1].tolist()
    out, k = [], 0
    for row in texts:
        out.append(probs[k:k + len(row)])
        k += len(row)
    return out


def originals(record: dict) -> list[str]:
    """The record's own captions: "captions" when present, else "caption"."""
    caps = record.get("captions") or ([record["caption"]] if record.get("caption") else [])
    return [c for c in caps if isinstance(c, str) and c.strip()]


@torch.no_grad()
def filter_records(captioner, filt, records: list[dict], cfg: CapFiltConfig, seed: int, pixels=None):
    """Caption and filter decoded records (their "image" a PIL image); returns one output record per input:
    the kept captions as "captions"/"caption" and every candidate with its source, score and verdict.
    pixels: (the filter's, the captioner's or None) preprocessed batches, when the caller has made them."""
    images = [r["image"] for r in records]
    fp, cp = pixels if pixels is not None else (filt.preprocess(images), None)
    tokens = filt.image_tokens(fp.to(filt.device))  # one ViT pass when one model does both
    if not cfg.n_synthetic:
        synth = [[] for _ in records]
    else:
        cap_tokens = tokens if captioner is filt else captioner.image_tokens(
            (cp if cp is not None else captioner.preprocess(images)).to(captioner.device))
        synth = synthetic_captions(captioner, cap_tokens, cfg, seed)
    texts = [originals(r) + s for r, s in zip(records, synth)]
    scores = match_scores(filt, tokens, texts)
    out = []
    for r, s, row, sc in zip(records, synth, texts, scores):
        n_orig = len(row) - len(s)
        labels = r.get("noise") if isinstance(r.get("noise"), list) and len(r["noise"]) == n_orig else None
        cands = []
        for j, (text, p) in enumerate(zip(row, sc)):
            score = round(p, 6)  # the verdict follows the stored score, so the file agrees with itself
            c = {"text": text, "source": "original" if j < n_orig else "synthetic", "score": score,
                 "kept": score >= cfg.threshold}
            if labels is not None and j < n_orig:
                c["noise"] = labels[j]
            cands.append(c)
        kept = [c["text"] for c in cands if c["kept"]]
        extra = {k: v for k, v in r.items() if k not in REPLACED_FIELDS}
        out.append({**extra, "captions": kept, "caption": kept[0] if kept else None, "candidates": cands})
    return out


def labelled(rows) -> list[tuple[float, str]]:
    """(score, noise label) of every labelled original caption in `filter_records` rows."""
    return [(c["score"], c["noise"]) for row in rows for c in row["candidates"] if "noise" in c]
