"""CapFilt's gain experiment (`compare --capfilt`), at a tiny budget: three corpora, CapFilt, three CLIPs."""

import pytest
import torch

import clipblip
from clipblip.experiments.capfilt_gain import METRICS, GainConfig, run, uncertainty


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
    assert r["blip"]["r1_gain"] == pytest.approx(r["scores"]["capfilt"]["t2i_r1"] - r["scores"]["noisy"]["t2i_r1"])
    assert all(lo <= r["scores"][c][m] <= hi for c in r["scores"] for m in METRICS for lo, hi in [r["ci"][c][m]])
    assert {t["n"] for t in r["tests"]} == {cfg.eval_n} and len(r["blip"]["ci"]["r1_gain"]) == 2
    assert all(0 <= lo <= hi <= 1 for lo, hi in [r["filter"]["wrong"]["ci"]["recall"]])
    models = {c: (tmp_path / f"train-{c}" / "model" / "model.safetensors").stat().st_mtime_ns for c in r["scores"]}
    again = run(tmp_path, blip, cfg, progress=False)
    assert again["scores"] == r["scores"]
    assert all((tmp_path / f"train-{c}" / "model" / "model.safetensors").stat().st_mtime_ns == t
               for c, t in models.items())


def _outcomes(right: dict[str, int], n: int = 10) -> dict[str, list[bool]]:
    """Per metric, the first `right[m]` of n items right (the same items for every corpus: nested successes)."""
    return {m: [i < right.get(m, 0) for i in range(n)] for m in METRICS}


def test_uncertainty_by_hand():
    """Worked by hand on 10 items: noisy gets items 0-1 right, CapFilt 0-5, clean 0-7 on R@1.
    Scores 20% / 60% / 80%; gap closed (0.6 - 0.2) / (0.8 - 0.2) = 2/3; the gain +40 points rests on 4 queries
    only CapFilt gets right and none only noisy does: exact McNemar p = 2 * 0.5^4 = 0.125. Wilson(6, 10) =
    (31.27%, 83.18%). With zero-shot colour equal on all three corpora the gap is undefined, its interval too."""
    items = {"noisy": _outcomes({"t2i_r1": 2, "zs_color": 5, "zs_count": 2}),
             "capfilt": _outcomes({"t2i_r1": 6, "zs_color": 5, "zs_count": 3}),
             "clean": _outcomes({"t2i_r1": 8, "zs_color": 5, "zs_count": 3})}
    u = uncertainty(items)
    assert [u["scores"][c]["t2i_r1"] for c in ("noisy", "capfilt", "clean")] == [0.2, 0.6, 0.8]
    assert u["ci"]["capfilt"]["t2i_r1"] == pytest.approx([0.3127, 0.8318], abs=1e-4)
    assert u["gap_closed"]["t2i_r1"] == pytest.approx(2 / 3) and u["blip"]["gap_closed"] == pytest.approx(2 / 3)
    assert u["blip"]["r1_gain"] == pytest.approx(0.4)
    # McNemar against noisy: 4 right only with CapFilt, none only without; against clean: 2 only with clean,
    # p = 2 * 0.5^2 = 0.5. Holm over the 8 tests: the smallest p (0.125) times 8 is 1.
    t = {(x["metric"], x["against"]): x for x in u["tests"]}
    assert len(u["tests"]) == 8
    r1 = t["t2i_r1", "noisy"]
    assert (r1["n"], r1["only_other"], r1["only_capfilt"], r1["p"]) == (10, 0, 4, pytest.approx(0.125))
    assert r1["diff"] == pytest.approx(0.4) and r1["p_holm"] == 1.0
    assert (t["t2i_r1", "clean"]["only_other"], t["t2i_r1", "clean"]["p"]) == (2, pytest.approx(0.5))
    assert t["zs_color", "clean"]["p"] == 1.0  # no discordant items
    lo, hi = u["blip"]["ci"]["r1_gain"]  # every resample keeps noisy <= capfilt (nested successes): gain >= 0
    assert 0 <= lo < 0.4 < hi <= 1
    assert u["gap_closed"]["zs_color"] is None and u["ci"]["gap_closed"]["zs_color"] is None
    # zero-shot count: clean beats noisy on one item of 10, so the gap (1/1) is defined but a resample without that
    # item (0.9^10 = 35% of them) leaves it undefined, and the interval None
    assert u["gap_closed"]["zs_count"] == 1.0 and u["ci"]["gap_closed"]["zs_count"] is None
    wide = {c: _outcomes({"t2i_r1": k}, n=400) for c, k in (("noisy", 80), ("capfilt", 240), ("clean", 320))}
    lo, hi = uncertainty(wide)["ci"]["gap_closed"]["t2i_r1"]
    assert lo < 2 / 3 < hi and hi - lo < 0.3
