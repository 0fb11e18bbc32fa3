"""What CapFilt buys, measured: one CLIP budget trained on three corpora of the same web images, then evaluated on
the clean Shapes test split.

- noisy:   the web split's captions, a share `noise` of them wrong (another scene's) or partly wrong (one colour or
           count changed), as alt-texts are;
- capfilt: that corpus through `data.capfilt` with a BLIP captioner and filter, the threshold calibrated on a
           small labelled web set of other images;
- clean:   the same images with true captions (the world's noise-free captions): the ceiling.

gap closed = (capfilt - noisy) / (clean - noisy), per metric. Every rate carries a 95% interval: Wilson for the
filter's shares and each CLIP's scores (independent test items), a bootstrap over the test items for the gap
closed and a paired one for the R@1 gain (all three CLIPs are scored on the same items); CapFilt's CLIP is tested
against the other two on every metric by exact McNemar, Holm-corrected. Every stage writes under
`out` and is skipped when its output is already there, so a killed run resumes (training resumes from its
checkpoints).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import stats
from ..errors import ClipBlipError
from ..eval.uncertainty import shares_ci

METRICS = ("t2i_r1", "zs_shape", "zs_color", "zs_count")
N_BOOT = 1000


@dataclass
class GainConfig:
    n: int = 3000  # web images in the corpus, one caption each (an alt-text)
    noise: float = 0.5  # share of noisy captions: half wrong, half partly wrong
    calibration_n: int = 256  # labelled web images (indices after the corpus) that set the threshold
    steps: int = 1000
    batch_size: int = 64
    eval_n: int = 500  # test-split scenes for R@1 and zero-shot
    seed: int = 0


def _write_web(out: Path, n: int, noise: float, start: int, seed: int) -> Path:
    from ..data.shapes_io import write_split

    path = out / "web.jsonl"
    if not path.exists():
        write_split(out, n, split="web", seed=seed, size=64, captions=1, noise=noise, start=start, progress=False)
    return path


def corpora(out: Path, cfg: GainConfig, blip, progress: bool = True) -> tuple[dict, dict]:
    """The three corpora's JSONL paths, and the CapFilt summary (filter quality on the noise labels)."""
    from ..data.capfilt import capfilt, labelled_scores
    from ..metrics import calibrate
    from ..tasks.capfilt import CapFiltConfig

    noisy = _write_web(out / "noisy", cfg.n, cfg.noise, 0, cfg.seed)
    clean = _write_web(out / "clean", cfg.n, 0.0, 0, cfg.seed)
    labelled = _write_web(out / "calibration", cfg.calibration_n, cfg.noise, cfg.n, cfg.seed)
    summary_path = out / "capfilt" / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    else:
        threshold = calibrate(labelled_scores(blip, labelled, CapFiltConfig()))
        summary = capfilt(noisy, out / "capfilt", blip, blip, CapFiltConfig(threshold=threshold, seed=cfg.seed),
                          progress=progress)
    return {"noisy": noisy, "capfilt": out / "capfilt" / "captions.jsonl", "clean": clean}, summary


def train_on(data: Path, out: Path, cfg: GainConfig):
    """A shapes-clip model trained on `data` with the experiment's budget (resumed if a run is there)."""
    from ..loading import load
    from ..train.config import resolve
    from ..train.loop import train
    from ..train.state import latest

    if not (out / "model").exists():
        import torch

        overrides = [f"data={data}", f"steps={cfg.steps}", f"batch_size={cfg.batch_size}",
                     f"warmup={max(cfg.steps // 10, 1)}", "eval_every=0", "eval_n=0", "save_every=50",
                     "progress=false", f"seed={cfg.seed}", f"out={out}"]
        with torch.inference_mode(False), torch.enable_grad():  # callers (compare) may run in inference mode
            train(resolve("shapes-clip", overrides=overrides), resume=latest(out / "checkpoints") is not None)
    return load(out / "model", device="cpu", precision="fp32")  # evaluated as it was trained


def outcomes(model, cfg: GainConfig) -> dict[str, list[bool]]:
    """Per metric, the right/wrong outcome of each test item (a scene's caption retrieving it first; an image
    classified zero-shot): every corpus's CLIP is scored on the same items, so differences are paired."""
    from ..data.shapes_eval import records, t2i_hits, zero_shot_outcomes

    scenes = records("test", cfg.eval_n, cfg.seed)
    single = records("test", cfg.eval_n, cfg.seed, n_objects=1)
    zs = zero_shot_outcomes(model, single, scenes)
    return {"t2i_r1": t2i_hits(model, scenes), **{f"zs_{k}": v for k, v in zs.items()}}


def tests(items: dict[str, dict[str, list[bool]]]) -> list[dict]:
    """Exact McNemar of CapFilt's CLIP against the noisy corpus's and the clean corpus's on every metric (the same
    test items), Holm-corrected over all of them ("p_holm")."""
    out = []
    for m in METRICS:
        for other in ("noisy", "clean"):
            t = stats.mcnemar(items[other][m], items["capfilt"][m])
            out.append({"metric": m, "against": other, "n": t["n"], "diff": t["diff"], "only_other": t["only_a"],
                        "only_capfilt": t["only_b"], "p": t["p"]})
    for t, p in zip(out, stats.holm([t["p"] for t in out])):
        t["p_holm"] = p
    return out


def uncertainty(items: dict[str, dict[str, list[bool]]]) -> dict:
    """From each corpus's outcomes: the scores, their Wilson intervals, the gap closed per metric with a bootstrap
    interval (the three CLIPs' items resampled together; None where the ratio is undefined in some resample:
    unbounded), CapFilt's R@1 gain over the noisy corpus with a paired bootstrap interval, and the `tests`."""
    scores = {c: {m: float(np.mean(v)) for m, v in out.items()} for c, out in items.items()}
    ci = {c: shares_ci(out) for c, out in items.items()}
    gap, ci["gap_closed"] = {}, {}
    for m in METRICS:
        noisy, capfilt, clean = (np.asarray(items[c][m], dtype=float) for c in ("noisy", "capfilt", "clean"))
        gap[m] = _closed(noisy.mean(), capfilt.mean(), clean.mean())
        lo, hi = stats.bootstrap(lambda idx: _closed(noisy[idx].mean(), capfilt[idx].mean(), clean[idx].mean(),
                                                     undefined=math.nan), len(noisy), n_boot=N_BOOT)
        # a resample where clean does not beat noisy leaves the ratio undefined, and the interval with it
        ci["gap_closed"][m] = None if gap[m] is None or math.isnan(lo) else [lo, hi]
    noisy, capfilt = (np.asarray(items[c]["t2i_r1"], dtype=float) for c in ("noisy", "capfilt"))
    gain = stats.paired_bootstrap(lambda idx: noisy[idx].mean(), lambda idx: capfilt[idx].mean(), len(noisy),
                                  n_boot=N_BOOT)
    blip = {"r1_gain": gain["diff"], "gap_closed": gap["t2i_r1"],
            "ci": {"r1_gain": list(gain["ci"]), "gap_closed": ci["gap_closed"]["t2i_r1"]}}
    return {"scores": scores, "ci": ci, "gap_closed": gap, "blip": blip, "tests": tests(items)}


def run(out, blip, cfg: GainConfig | None = None, progress: bool = True) -> dict:
    """The whole experiment; results also in out/gain.json."""
    import torch

    cfg = cfg or GainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "settings.json"
    if settings.exists() and json.loads(settings.read_text()) != asdict(cfg):
        raise ClipBlipError(f"{out} holds a CapFilt experiment with other settings; use another output folder")
    settings.write_text(json.dumps(asdict(cfg), indent=2))
    paths, summary = corpora(out, cfg, blip, progress)
    items = {}
    for name, data in paths.items():
        model = train_on(data, out / f"train-{name}", cfg)
        with torch.inference_mode():
            items[name] = outcomes(model.eval(), cfg)
    results = {"settings": asdict(cfg), **uncertainty(items),
               "filter": summary.get("filter_quality"), "threshold": summary["threshold"],
               "kept": summary["kept"], "dropped": summary["dropped"],
               "images_without_captions": summary["images_without_captions"],
               "plot": str(out / "capfilt" / "scores.png")}
    (out / "gain.json").write_text(json.dumps(results, indent=2))
    return results


MIN_GAP = 0.02  # below 2 points between clean and noisy, the ratio is noise over noise


def _closed(noisy: float, capfilt: float, clean: float, undefined=None):
    """Share of the noisy-to-clean gap that CapFilt closes (`undefined` when clean is not clearly better than
    noisy)."""
    return float((capfilt - noisy) / (clean - noisy)) if clean - noisy >= MIN_GAP else undefined
