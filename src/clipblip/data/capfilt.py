"""CapFilt over a dataset: bootstrap a clean caption corpus from noisy image-text pairs, resumably.

The inference (caption, score, keep) is `tasks/capfilt.py`; this is the job around it. It streams in parts of
`part_size` records. A part is computed in memory and written as one file, `parts/part-NNNNNN.json` (atomically),
so a killed run keeps every finished part and a re-run redoes only the missing ones. Under torchrun rank r takes
parts r, r + world, ...; the records of other ranks' parts are skipped without decoding their images. When every
part exists, one process merges them, in order, into `captions.jsonl` (a dataset the readers take; images stored
as bytes in the input are written to `images/`), `rejects.jsonl` and `summary.json` + `scores.png`. Memory holds
one part and fixed-size histograms.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from contextlib import closing
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import distributed
from ..errors import ClipBlipError
from ..extras import require
from ..files import atomic_write, write_atomic
from ..jobs import ordered_map
from ..metrics import filter_quality
from ..stats import wilson
from ..tasks.capfilt import CapFiltConfig, filter_records, labelled, originals
from ..tasks.caption import require_blip
from .readers import decode, open_dataset
from .rejects import Rejects
from .shards import image_format

BINS = 50  # score histogram bins over [0, 1]


def _part_path(out: Path, k: int) -> Path:
    return out / "parts" / f"part-{k:06d}.json"


def _image_ref(record: dict, out: Path) -> str:
    """A path for the output record: the input's path, or the input's bytes written under out/images/."""
    image = record["image"]
    if isinstance(image, (str, os.PathLike)):
        return str(Path(image).absolute())
    data = bytes(image)
    name = hashlib.sha1(data).hexdigest()[:16] + "." + (image_format(data) or "png")
    path = out / "images" / name
    if not path.exists():
        write_atomic(path, data)
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
    write_atomic(_part_path(out, k), json.dumps(doc, ensure_ascii=False))
    return doc


def capfilt(data, out, captioner, filt=None, cfg: CapFiltConfig | None = None, *, rank: int = 0, world: int = 1,
            progress: bool = True, merge: bool = True) -> dict:
    """Run CapFilt over `data` (a dataset source or an iterable of records) into the folder `out`.

    Re-running resumes: finished parts are kept. Returns the summary (also `out/summary.json`), or, with
    merge=False (the other ranks under torchrun), the number of parts this rank wrote.
    """
    require("matplotlib", "eval", "CapFilt's score plot")  # drawn last: say it before the job, not after
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
        write_atomic(path, json.dumps(settings, indent=2))


def merge_parts(out: Path, n_parts: int, cfg: CapFiltConfig) -> dict:
    """captions.jsonl, rejects.jsonl, summary.json and scores.png from every part (all must exist)."""
    missing = [k for k in range(n_parts) if not _part_path(out, k).exists()]
    if missing:
        raise ClipBlipError(f"{len(missing)} part(s) of {out} are not finished (the first: {missing[0]}); "
                            "run the same command again to finish them")
    stats = _Stats()
    with atomic_write(out / "captions.jsonl") as f, atomic_write(out / "rejects.jsonl") as rf:
        for k in range(n_parts):
            doc = json.loads(_part_path(out, k).read_text())
            for row in doc["records"]:
                stats.add(row)
                if row["captions"]:  # an image with no caption left is no training pair
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            for rej in doc["rejects"]:
                stats.rejected += 1
                rf.write(json.dumps(rej, ensure_ascii=False) + "\n")
    summary = stats.summary(cfg)
    quality = filter_quality(stats.labelled, cfg.threshold)
    if quality:
        summary["filter_quality"] = with_intervals(quality)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    plot_scores(stats, quality, out / "scores.png", cfg.threshold)
    return summary


def with_intervals(quality: dict) -> dict:
    """metrics.filter_quality's result with a 95% Wilson interval ("ci") beside each removal share of each kind."""
    out = dict(quality)
    for kind, q in quality.items():
        if isinstance(q, dict) and "counts" in q:
            c = q["counts"]
            removed = c["noisy_removed"] + c["clean_removed"]
            out[kind] = {**q, "ci": {"precision": list(wilson(c["noisy_removed"], removed)) if removed else None,
                                     "recall": list(wilson(c["noisy_removed"], q["n"])),
                                     "clean_removed": list(wilson(c["clean_removed"], c["clean"]))}}
    return out


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


def plot_scores(stats: _Stats, quality: dict | None, path: Path, threshold: float) -> None:
    # The Figure API with the Agg canvas: no pyplot global state (no backend set for the whole process).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 3 if quality else 1
    fig = Figure(figsize=(4.2 * panels, 3.4))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, panels))
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


def labelled_scores(filt, data, cfg: CapFiltConfig, limit: int | None = None) -> list[tuple[float, str]]:
    """(ITM score, noise label) of the original captions of a labelled dataset (records with "noise": one of
    clean / wrong / partial / ... per caption), for `calibrate`."""
    scoring = CapFiltConfig(**{**asdict(cfg), "n_synthetic": 0})
    records = (d for r in itertools.islice(_open(data), limit)
               if isinstance(r.get("noise"), list) and (d := decode(r)) is not None)
    pairs = []
    for _, batch in _parts(records, cfg.batch_size):
        pairs += labelled(filter_records(filt, filt, batch, scoring, 0))
    if not pairs:
        raise ClipBlipError("the calibration set has no captions labelled with their noise: each record needs "
                            '"noise": ["clean" | "wrong" | ..., one per caption]')
    return pairs
