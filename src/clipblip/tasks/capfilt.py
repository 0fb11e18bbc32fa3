"""CapFilt (BLIP, section 3.3): bootstrap a clean caption corpus from noisy image-text pairs.

For every image a captioner (a BLIP decoder) writes synthetic captions by nucleus sampling; a filter (a BLIP ITM
head) scores the original captions and the synthetic ones, and a caption is kept when its match probability is
at least the threshold (the paper keeps what ITM calls a match: 0.5).

The job streams in parts of `part_size` records. A part is computed in memory and written as one file,
`parts/part-NNNNNN.json` (temp file, fsync, rename), so a killed run keeps every finished part and a re-run
redoes only the missing ones. Under torchrun rank r takes parts r, r + world, ...; the records of other ranks'
parts are skipped without decoding their images. When every part exists, one process merges them, in order,
into `captions.jsonl` (a dataset the readers take; images stored as bytes in the input are written to
`images/`), `rejects.jsonl` and `summary.json` + `scores.png`. Memory holds one part and fixed-size histograms.

Each kept or dropped caption is a candidate {"text", "source": "original" | "synthetic", "score", "kept"}, plus
"noise" when the input labels its original captions (the Shapes web split does), which `filter_quality` reads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .. import distributed
from ..errors import ClipBlipError
from ..generate import GenerationConfig, generate
from .caption import prompt_ids, require_blip
from .inputs import ordered_map

BINS = 50  # score histogram bins over [0, 1]
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


# ------------------------------------------------------------------------------------------------ the job


def _part_path(out: Path, k: int) -> Path:
    return out / "parts" / f"part-{k:06d}.json"


def _write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temp file, fsync, rename: `path` is either absent or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: ranks may write the same image
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _image_ref(record: dict, out: Path) -> str:
    """A path for the output record: the input's path, or the input's bytes written under out/images/."""
    image = record["image"]
    if isinstance(image, (str, os.PathLike)):
        return str(Path(image).absolute())
    data = bytes(image)
    from ..data.shards import _image_format

    name = hashlib.sha1(data).hexdigest()[:16] + "." + (_image_format(data) or "png")
    path = out / "images" / name
    if not path.exists():
        _write_atomic(path, data)
    return f"images/{name}"


def _parts(records, part_size: int):
    """(part index, list of raw records) over any iterable of records, streaming."""
    part, k = [], 0
    for r in records:
        part.append(r)
        if len(part) == part_size:
            yield k, part
            part, k = [], k + 1
    if part:
        yield k, part


def _prepared(captioner, filt, cfg: CapFiltConfig, r: dict):
    """(decoded record, (its pixels for the filter, for the captioner or None)), or (None, the reason it is
    rejected); runs in a decoding thread, so the caller logs the reject, in input order."""
    from ..data.readers import decode
    from ..data.rejects import Rejects

    if not originals(r) and cfg.n_synthetic == 0:
        return None, "no caption to filter, and no synthetic captions asked for"
    d = decode(r, why := Rejects())
    if d is None:
        return None, why.items[0][1]
    other = captioner is not filt and cfg.n_synthetic  # uint8: the consumer normalizes (Preprocess.uint8)
    return d, (filt.preprocess.uint8(d["image"]), captioner.preprocess.uint8(d["image"]) if other else None)


def _good(raw, prepared, rejects):
    """(record, decoded record, pixels) of the records `_prepared` could use; the others go to `rejects`."""
    for r, (d, px) in zip(raw, prepared):
        if d is None:
            rejects.add(r.get("id"), px)
        else:
            yield r, d, px


def run_part(captioner, filt, raw: list[dict], k: int, cfg: CapFiltConfig, out: Path) -> dict:
    """Decode (in `cfg.workers` threads, two batches ahead of the models), caption, filter and write part k;
    returns its stats."""
    from ..data.rejects import Rejects

    rejects, rows = Rejects(), []
    prepared = ordered_map(partial(_prepared, captioner, filt, cfg), raw, cfg.workers, 2 * cfg.batch_size)
    with closing(prepared):
        for j, batch in _parts(_good(raw, prepared, rejects), cfg.batch_size):
            seed = cfg.seed * 7919 + k * 104729 + j * cfg.batch_size  # depends on the part alone: resumable
            refs, decoded, px = zip(*batch)
            pixels = tuple(None if p[0] is None else model.preprocess.normalize(torch.stack(p))
                           for p, model in zip(zip(*px), (filt, captioner)))
            for ref, row in zip(refs, filter_records(captioner, filt, list(decoded), cfg, seed, pixels)):
                row["image"] = _image_ref(ref, out)
                rows.append(row)
    doc = {"part": k, "records": rows, "rejects": [{"id": i, "reason": why} for i, why in rejects.items],
           "inputs": len(raw)}
    _write_atomic(_part_path(out, k), json.dumps(doc, ensure_ascii=False))
    return doc


def capfilt(data, out, captioner, filt=None, cfg: CapFiltConfig | None = None, *, rank: int = 0, world: int = 1,
            progress: bool = True, merge: bool = True) -> dict:
    """Run CapFilt over `data` (a dataset source or an iterable of records) into the folder `out`.

    Re-running resumes: finished parts are kept. Returns the summary (also `out/summary.json`), or, with
    merge=False (the other ranks under torchrun), the number of parts this rank wrote.
    """
    from tqdm import tqdm

    cfg = cfg or CapFiltConfig()
    filt = filt if filt is not None else captioner
    require_blip(captioner, "CapFilt's captioner")
    require_blip(filt, "CapFilt's filter")
    if cfg.n_synthetic:
        captioner.require("decoder", "write synthetic captions")
    filt.require("itm", "filter captions")
    out = Path(out)
    if rank == 0:  # before any rank writes: another rank's temp file is never taken for a stale one
        (out / "parts").mkdir(parents=True, exist_ok=True)
        _check_settings(out, cfg)
        for stale in (out / "parts").glob("*.tmp"):
            stale.unlink()
    distributed.barrier()
    if rank != 0:
        _check_settings(out, cfg)
    records = _open(data)
    total = len(records) if hasattr(records, "__len__") else None
    bar = tqdm(total=total, desc=f"capfilt{f' rank {rank}' if world > 1 else ''}", unit="img",
               disable=not progress)
    n_parts, written = 0, 0
    for k, raw in _parts(iter(records), cfg.part_size):
        n_parts = k + 1
        if k % world == rank and not _part_path(out, k).exists():
            run_part(captioner, filt, raw, k, cfg, out)
            written += 1
        bar.update(len(raw))
    bar.close()
    if not merge:
        return {"parts": n_parts, "written": written}
    return merge_parts(out, n_parts, cfg)


def _open(data):
    if isinstance(data, (str, os.PathLike)):
        from ..data.readers import open_dataset

        return open_dataset(data)
    return data


def _check_settings(out: Path, cfg: CapFiltConfig) -> None:
    """A resumed job must use the settings its finished parts were made with."""
    path = out / "capfilt_config.json"
    settings = _settings(cfg)
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            raise ClipBlipError(f"{out} holds a CapFilt run with other settings {diff} (was, now); resume it with "
                                "the same settings, or choose another --out")
    else:
        _write_atomic(path, json.dumps(settings, indent=2))


def merge_parts(out: Path, n_parts: int, cfg: CapFiltConfig) -> dict:
    """captions.jsonl, rejects.jsonl, summary.json and scores.png from every part (all must exist)."""
    missing = [k for k in range(n_parts) if not _part_path(out, k).exists()]
    if missing:
        raise ClipBlipError(f"{len(missing)} part(s) of {out} are not finished (the first: {missing[0]}); "
                            "run the same command again to finish them")
    stats = _Stats()
    tmp, rtmp = out / "captions.jsonl.tmp", out / "rejects.jsonl.tmp"
    with open(tmp, "w") as f, open(rtmp, "w") as rf:
        for k in range(n_parts):
            doc = json.loads(_part_path(out, k).read_text())
            for row in doc["records"]:
                stats.add(row)
                if row["captions"]:  # an image with no caption left is no training pair
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            for rej in doc["rejects"]:
                stats.rejected += 1
                rf.write(json.dumps(rej, ensure_ascii=False) + "\n")
    os.replace(tmp, out / "captions.jsonl")
    os.replace(rtmp, out / "rejects.jsonl")
    summary = stats.summary(cfg)
    quality = filter_quality(stats.labelled, cfg.threshold)
    if quality:
        summary["filter_quality"] = quality
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    plot_scores(stats, quality, out / "scores.png", cfg.threshold)
    return summary


class _Stats:
    """Kept/dropped counts and score histograms per source; the (score, noise) of labelled originals."""

    def __init__(self):
        self.kept = {"original": 0, "synthetic": 0}
        self.dropped = {"original": 0, "synthetic": 0}
        self.hist = {s: np.zeros(BINS, dtype=np.int64) for s in self.kept}
        self.images, self.images_empty, self.rejected = 0, 0, 0
        self.labelled: list[tuple[float, str]] = []  # 2 numbers a caption: small beside the corpus itself

    def add(self, row: dict) -> None:
        self.images += 1
        self.images_empty += not row["captions"]
        for c in row["candidates"]:
            (self.kept if c["kept"] else self.dropped)[c["source"]] += 1
            self.hist[c["source"]][min(int(c["score"] * BINS), BINS - 1)] += 1
            if "noise" in c:
                self.labelled.append((c["score"], c["noise"]))

    def summary(self, cfg: CapFiltConfig) -> dict:
        return {"images": self.images, "images_without_captions": self.images_empty, "rejected": self.rejected,
                "kept": self.kept, "dropped": self.dropped, "threshold": cfg.threshold,
                "score_histogram": {"bins": BINS, **{s: h.tolist() for s, h in self.hist.items()}},
                "settings": _settings(cfg)}


def _settings(cfg: CapFiltConfig) -> dict:
    """What decides the output (the number of decoding threads does not): checked on resume, in the summary."""
    return {k: v for k, v in asdict(cfg).items() if k != "workers"}


# ------------------------------------------------------------------------------------------------ evaluation


def filter_quality(labelled, threshold: float) -> dict | None:
    """How well the filter removes noisy originals, from (ITM score, noise label) pairs: removal precision and
    recall overall and per noise type (each type against the clean captions), and ROC/PR curves with AUC.
    "Positive" is a noisy caption; the filter removes a caption when its score is below `threshold`."""
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
    return {"n": int(noisy.sum()), "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / int(noisy.sum()),
            "clean_removed": fp / int(clean.sum()), "roc_auc": float(np.trapezoid(tpr, fpr)),
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


def plot_scores(stats: _Stats, quality: dict | None, path: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if quality else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4))
    axes = np.atleast_1d(axes)
    edges = np.linspace(0, 1, BINS + 1)
    for source, h in stats.hist.items():
        axes[0].stairs(h, edges, label=source)
    axes[0].axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    axes[0].set(title="ITM match probability", xlabel="score", ylabel="captions")
    axes[0].legend(fontsize=8)
    if quality:
        for kind, q in quality.items():
            if isinstance(q, dict) and "roc" in q:
                axes[1].plot(q["roc"]["fpr"], q["roc"]["tpr"], label=f"{kind} (AUC {q['roc_auc']:.2f})")
                axes[2].plot(q["pr"]["recall"], q["pr"]["precision"], label=f"{kind} (AUC {q['pr_auc']:.2f})")
        axes[1].plot([0, 1], [0, 1], color="grey", lw=0.5)
        axes[1].set(title="removing noisy captions: ROC", xlabel="clean removed (FPR)", ylabel="noisy removed (TPR)")
        axes[2].set(title="removing noisy captions: PR", xlabel="recall", ylabel="precision")
        for ax in axes[1:]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def labelled_scores(filt, data, cfg: CapFiltConfig, limit: int | None = None) -> list[tuple[float, str]]:
    """(ITM score, noise label) of the original captions of a labelled dataset (records with "noise": one of
    clean / wrong / partial / ... per caption), for `calibrate`."""
    from ..data.readers import decode

    scoring = CapFiltConfig(**{**asdict(cfg), "n_synthetic": 0})
    labelled = (d for r in itertools.islice(_open(data), limit)
                if isinstance(r.get("noise"), list) and (d := decode(r)) is not None)
    pairs = []
    for _, batch in _parts(labelled, cfg.batch_size):
        pairs += _labelled(filter_records(filt, filt, batch, scoring, 0))
    if not pairs:
        raise ClipBlipError("the calibration set has no captions labelled with their noise: each record needs "
                            '"noise": ["clean" | "wrong" | ..., one per caption]')
    return pairs


def _labelled(rows) -> list[tuple[float, str]]:
    return [(c["score"], c["noise"]) for row in rows for c in row["candidates"] if "noise" in c]
