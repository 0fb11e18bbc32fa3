"""CapFilt's gain experiment (`compare --capfilt`), at a tiny budget: three corpora, CapFilt, three CLIPs."""

import pytest
import torch

import clipblip
from clipblip.experiments.capfilt_gain import METRICS, GainConfig, run


@pytest.fixture(scope="module")
def blip():
    return clipblip.load("shapes-blip")


def test_gain_experiment_end_to_end_under_inference_mode(blip, tmp_path):
    """compare --capfilt's experiment, tiny: three corpora, CapFilt, three CLIPs trained and scored; a second run
    reuses every stage (compare runs it inside torch.inference_mode, training included)."""
    cfg = GainConfig(n=24, calibration_n=16, steps=2, batch_size=8, eval_n=16)
    with torch.inference_mode():
        r = run(tmp_path, blip, cfg, progress=False)
    assert set(r["scores"]) == {"noisy", "capfilt", "clean"}
    assert all(0 <= r["scores"][c][m] <= 1 for c in r["scores"] for m in METRICS)
    assert r["filter"]["wrong"]["n"] > 0 and 0 <= r["threshold"] <= 1
    assert r["blip"]["r1_gain"] == r["scores"]["capfilt"]["t2i_r1"] - r["scores"]["noisy"]["t2i_r1"]
    models = {c: (tmp_path / f"train-{c}" / "model" / "model.safetensors").stat().st_mtime_ns for c in r["scores"]}
    again = run(tmp_path, blip, cfg, progress=False)
    assert again["scores"] == r["scores"]
    assert all((tmp_path / f"train-{c}" / "model" / "model.safetensors").stat().st_mtime_ns == t
               for c, t in models.items())
