"""The statistics behind `clipblip compare`'s verdicts, as plain functions (numpy and the standard library).

Intervals (Wilson for a share, percentile bootstrap for anything else), paired tests (exact McNemar for right/wrong
outcomes, the paired bootstrap for any statistic over the same items), Holm's correction over several tests, how
many items a test would need to see a difference, and timing with its spread. A difference is always b minus a.
"""

from __future__ import annotations

import math
import statistics
import time
from statistics import NormalDist

import numpy as np

from .errors import ClipBlipError


def _z(level: float) -> float:
    """The two-sided normal quantile of a confidence level (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise ClipBlipError(f"confidence level must be between 0 and 1 (e.g. 0.95), got {level}.")
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


# ---------------------------------------------------------------------------------------------------- intervals

def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials; (0.0, 1.0) when n == 0."""
    if not 0 <= k <= n:
        raise ClipBlipError(f"wilson: need 0 <= successes <= trials, got {k} of {n}.")
    z = _z(level)
    if n == 0:
        return 0.0, 1.0
    p = k / n
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k == 0 or k == n one end is exactly 0 or 1; rounding would leave it a hair off
    return (0.0 if k == 0 else max(0.0, center - half)), (1.0 if k == n else min(1.0, center + half))


def _resamples(n: int, n_boot: int, seed: int):
    """n_boot arrays of n unit indices drawn with replacement, one round at a time (n_boot x n may not fit)."""
    if n_boot < 1:
        raise ClipBlipError(f"bootstrap: need at least one resample, got n_boot={n_boot}.")
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n, size=n)


def _percentiles(values, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [tail, 1 - tail])
    return float(lo), float(hi)


def bootstrap(stat, n: int, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat(idx) -> float`, the statistic on resampled unit indices 0..n-1.

    Each round draws n units with replacement (numpy's default_rng(seed)); (nan, nan) when n == 0.
    """
    _z(level)
    if n == 0:
        return math.nan, math.nan
    return _percentiles([stat(idx) for idx in _resamples(n, n_boot, seed)], level)


def paired_bootstrap(stat_a, stat_b, n: int, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap of stat_b - stat_a, both evaluated on the same resampled indices every round.

    {"diff": on all units, "ci": (lo, hi) percentile interval, "se": std of the bootstrap diffs, "p": two-sided p}.
    p = min(1, 2 * min(share of diffs <= 0, share >= 0)), each share as (count + 1) / (n_boot + 1), so it is
    never 0. Everything nan when n == 0.
    """
    _z(level)
    if n == 0:
        return {"diff": math.nan, "ci": (math.nan, math.nan), "se": math.nan, "p": math.nan}
    every = np.arange(n)
    diff = float(stat_b(every) - stat_a(every))
    diffs = np.array([stat_b(idx) - stat_a(idx) for idx in _resamples(n, n_boot, seed)], dtype=np.float64)
    below = (np.count_nonzero(diffs <= 0) + 1) / (n_boot + 1)
    above = (np.count_nonzero(diffs >= 0) + 1) / (n_boot + 1)
    se = float(diffs.std(ddof=1)) if n_boot > 1 else math.nan
    return {"diff": diff, "ci": _percentiles(diffs, level), "se": se, "p": min(1.0, 2 * min(below, above))}


# ---------------------------------------------------------------------------------------------------- paired tests

def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Bin(n, 1/2), k <= n / 2, to double precision: the top term C(n, k) / 2^n from exact
    integers (correctly rounded; 0.1-0.3 s at n = 100,000), the rest as running products of term ratios below it."""
    top = math.comb(n, k) / 2**n
    i = np.arange(k, 0, -1, dtype=np.float64)
    # term(i - 1) / term(i) = i / (n - i + 1); below k the terms fall away fast, so the products lose nothing
    return float(min(1.0, top * (1.0 + np.cumprod(i / (n - i + 1)).sum())))


def mcnemar(a_right, b_right) -> dict:
    """Exact McNemar test of two systems' right/wrong outcomes on the same items.

    {"n", "a", "b": shares right, "diff": b - a, "only_a": a right and b wrong, "only_b": b right and a wrong,
    "p": exact two-sided binomial p over the discordant pairs (1.0 when there are none)}.
    """
    a = np.asarray(a_right, dtype=bool).reshape(-1)
    b = np.asarray(b_right, dtype=bool).reshape(-1)
    if len(a) != len(b):
        raise ClipBlipError(f"mcnemar: got {len(a)} and {len(b)} outcomes; pass one of each per item.")
    n = len(a)
    only_a, only_b = int(np.count_nonzero(a & ~b)), int(np.count_nonzero(b & ~a))
    share_a = float(a.mean()) if n else math.nan
    share_b = float(b.mean()) if n else math.nan
    disc = only_a + only_b
    p = 1.0 if disc == 0 else min(1.0, 2 * _binom_half_cdf(min(only_a, only_b), disc))
    return {"n": n, "a": share_a, "b": share_b, "diff": share_b - share_a,
            "only_a": only_a, "only_b": only_b, "p": p}


def holm(pvalues: list) -> list:
    """Holm-Bonferroni adjusted p-values in the order given; None (and nan) pass through and do not count in m."""
    tested = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    m = len(tested)
    out = list(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(tested, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))  # step-down: never below a smaller p's
        out[i] = running
    return out


# ---------------------------------------------------------------------------------------------------- power

def _z_sum(alpha: float, power: float) -> tuple[float, float]:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ClipBlipError(f"alpha and power must be between 0 and 1, got alpha={alpha}, power={power}.")
    return NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)  # 77.0000000001 from rounding is still 77


def items_to_detect_paired(only_a: int, only_b: int, n: int, alpha=0.05, power=0.8) -> int | None:
    """About how many paired items McNemar's test needs to detect the observed difference (Connor 1987).

    n = (z_{1-alpha/2} sqrt(p_disc) + z_power sqrt(p_disc - d^2))^2 / d^2 with p_disc = (only_a + only_b) / n and
    d = (only_b - only_a) / n, rounded up; None when d == 0.
    """
    z_a, z_b = _z_sum(alpha, power)
    if n == 0 or only_a == only_b:
        return None
    p_disc, d = (only_a + only_b) / n, (only_b - only_a) / n
    return _ceil((z_a * math.sqrt(p_disc) + z_b * math.sqrt(max(0.0, p_disc - d * d))) ** 2 / (d * d))


def items_to_detect_se(diff: float, se: float, n: int, alpha=0.05, power=0.8) -> int | None:
    """About how many items a test with standard error `se` at n items needs to detect `diff`.

    n * ((z_{1-alpha/2} + z_power) * se / |diff|)^2 rounded up (se scales as 1/sqrt(n)); None when diff is 0 or
    nan, or se is 0 or nan.
    """
    z_a, z_b = _z_sum(alpha, power)
    if not diff or not se or math.isnan(diff) or math.isnan(se):
        return None
    return _ceil(n * ((z_a + z_b) * se / abs(diff)) ** 2)


# ---------------------------------------------------------------------------------------------------- timing

def summarize_times(seconds: list[float]) -> dict:
    """{"median", "min", "max", "n", "runs": [...]} of timings in seconds."""
    if not seconds:
        raise ClipBlipError("summarize_times: no timings; time at least one run.")
    runs = [float(s) for s in seconds]
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "n": len(runs), "runs": runs}


def timed(fn, repeat: int = 5, warmup: int = 1) -> dict:
    """Call fn() warmup times untimed, then `repeat` times under time.perf_counter; summarize_times of those."""
    if repeat < 1 or warmup < 0:
        raise ClipBlipError(f"timed: need repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}.")
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return summarize_times(runs)


def spreads_overlap(a: dict, b: dict) -> bool:
    """Whether the [min, max] spreads of two summarize_times results overlap (then neither is clearly faster)."""
    return a["min"] <= b["max"] and b["min"] <= a["max"]
