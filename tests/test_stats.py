"""The statistics behind compare's verdicts, each against values worked out by hand (the arithmetic is in the
comments; z = 1.959964 for 95 % two-sided, 0.841621 for 80 % power), plus a few properties (hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipblip.errors import ClipBlipError
from clipblip.stats import (
    bootstrap,
    holm,
    items_to_detect_paired,
    items_to_detect_se,
    mcnemar,
    paired_bootstrap,
    spreads_overlap,
    summarize_times,
    timed,
    wilson,
)

# ---------------------------------------------------------------------------------------------------- wilson


def test_wilson_by_hand():
    # z^2 = 3.841459, scale = 1 + z^2/10 = 1.3841459
    # 8/10: center = (0.8 + z^2/20) / scale = 0.992073 / 1.384146 = 0.716740
    #       half = z / scale * sqrt(0.8 * 0.2 / 10 + z^2 / 400) = 1.416015 * sqrt(0.0256036) = 0.226578
    assert wilson(8, 10) == pytest.approx((0.490162, 0.943318), abs=1e-5)
    # 0/10: center = half = 0.192073 / 1.384146 = 0.138766, so (0, 2 * 0.138766); 10/10 mirrors it
    assert wilson(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-5))
    assert wilson(10, 10) == (pytest.approx(0.722467, abs=1e-5), 1.0)
    assert wilson(0, 0) == (0.0, 1.0)
    # a higher level widens it
    lo99, hi99 = wilson(8, 10, level=0.99)
    assert lo99 < 0.490162 and hi99 > 0.943318


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ClipBlipError, match="successes"):
        wilson(11, 10)
    with pytest.raises(ClipBlipError, match="level"):
        wilson(1, 10, level=95)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_holds_the_share_and_stays_in_unit_interval(kn):
    k, n = kn
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= hi <= 1.0
    if n:
        assert lo <= k / n <= hi


# ---------------------------------------------------------------------------------------------------- mcnemar


def test_mcnemar_by_hand():
    # 10 items both right, 1 only a right, 9 only b right: X ~ Bin(10, 1/2),
    # P(X <= 1) = (C(10,0) + C(10,1)) / 2^10 = 11/1024, p = 2 * 11/1024 = 0.021484375
    a = [True] * 10 + [True] + [False] * 9
    b = [True] * 10 + [False] + [True] * 9
    r = mcnemar(a, b)
    assert r == {"n": 20, "a": 11 / 20, "b": 19 / 20, "diff": pytest.approx(8 / 20), "only_a": 1, "only_b": 9,
                 "p": pytest.approx(0.021484375, rel=1e-12)}
    assert mcnemar(b, a)["p"] == pytest.approx(0.021484375, rel=1e-12)  # two-sided: same p either way
    assert mcnemar(b, a)["diff"] == pytest.approx(-8 / 20)


def test_mcnemar_no_discordant_pairs_and_ties():
    # identical outcomes: no discordant pair, p = 1
    assert mcnemar([True, False, True], [True, False, True])["p"] == 1.0
    # 3 vs 3: P(X <= 3) for Bin(6, 1/2) = (1 + 6 + 15 + 20)/64 = 42/64, doubled 1.3125 -> capped at 1
    r = mcnemar([True] * 3 + [False] * 3, [False] * 3 + [True] * 3)
    assert (r["only_a"], r["only_b"], r["p"], r["diff"]) == (3, 3, 1.0, 0.0)
    # 0 vs 4: 2 * 1/16 = 0.125
    assert mcnemar([False] * 4, [True] * 4)["p"] == 0.125


def test_mcnemar_is_exact_for_many_discordant_pairs():
    # 9,800 vs 10,200 discordant pairs: the exact tail against integer arithmetic
    n, k = 20_000, 9_800
    c, tail = 1, 1
    for i in range(1, k + 1):
        c = c * (n - i + 1) // i
        tail += c
    r = mcnemar(np.r_[np.ones(k, bool), np.zeros(n - k, bool)], np.r_[np.zeros(k, bool), np.ones(n - k, bool)])
    assert r["p"] == pytest.approx(2 * tail / 2**n, rel=1e-12)
    # 0 vs 1000: 2 * 2^-1000, a p far below what 1 - cdf in floats could tell from 0
    assert mcnemar([False] * 1000, [True] * 1000)["p"] == 2.0**-999


def test_mcnemar_refuses_unequal_lengths():
    with pytest.raises(ClipBlipError, match="one of each per item"):
        mcnemar([True, False], [True])


# ---------------------------------------------------------------------------------------------------- holm


def test_holm_by_hand():
    # m = 3 (None does not count); sorted 0.01, 0.03, 0.04 -> 3*0.01 = 0.03, 2*0.03 = 0.06, max(1*0.04, 0.06) = 0.06
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    # capped at 1: 2 * 0.6 = 1.2 -> 1
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == [] and holm([None]) == [None]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=12))
def test_holm_never_lowers_a_p_and_keeps_the_order(ps):
    adj = holm(ps)
    assert [a is None for a in adj] == [p is None for p in ps]
    pairs = sorted((p, a) for p, a in zip(ps, adj) if p is not None)
    assert all(p <= a <= 1.0 for p, a in pairs)
    assert all(a1 <= a2 for (_, a1), (_, a2) in zip(pairs, pairs[1:]))  # monotone in rank


# ---------------------------------------------------------------------------------------------------- power


def test_items_to_detect_paired_by_hand():
    # only_a = 10, only_b = 30 of 100: p_disc = 0.4, d = 0.2
    # (1.959964 * sqrt(0.4) + 0.841621 * sqrt(0.4 - 0.04))^2 / 0.04
    # = (1.239590 + 0.504973)^2 / 0.04 = 3.043500 / 0.04 = 76.09 -> 77
    assert items_to_detect_paired(10, 30, 100) == 77
    assert items_to_detect_paired(30, 10, 100) == 77
    assert items_to_detect_paired(5, 5, 100) is None
    # a larger effect needs fewer: only_b = 50 -> p_disc 0.6, d 0.4: (1.518182 + 0.841621 * 0.663325)^2 / 0.16
    # = (1.518182 + 0.558268)^2 / 0.16 = 4.311644 / 0.16 = 26.95 -> 27
    assert items_to_detect_paired(10, 50, 100) == 27


def test_items_to_detect_se_by_hand():
    # 100 * ((1.959964 + 0.841621) * 0.05 / 0.1)^2 = 100 * 1.400793^2 = 196.22 -> 197
    assert items_to_detect_se(0.1, 0.05, 100) == 197
    assert items_to_detect_se(-0.1, 0.05, 100) == 197
    # the observed n already suffices when se is small: 100 * (2.801585 * 0.01 / 0.1)^2 = 7.85 -> 8
    assert items_to_detect_se(0.1, 0.01, 100) == 8
    assert items_to_detect_se(0.0, 0.05, 100) is None
    assert items_to_detect_se(0.1, 0.0, 100) is None
    assert items_to_detect_se(0.1, math.nan, 100) is None


# ---------------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_of_a_constant_collapses():
    assert bootstrap(lambda idx: 0.25, 50, n_boot=100) == (0.25, 0.25)
    assert all(math.isnan(x) for x in bootstrap(lambda idx: 0.25, 0))


def test_bootstrap_draws_n_units_with_replacement_from_all_of_them():
    seen = []
    bootstrap(lambda idx: seen.append(idx) or 0.0, 10, n_boot=200)
    assert len(seen) == 200 and all(len(idx) == 10 for idx in seen)
    # a round of 10 draws from 10 units repeats one with probability 1 - 10!/10^10 = 0.9996
    assert set(np.concatenate(seen)) == set(range(10)) and sum(len(set(idx)) < 10 for idx in seen) > 190


def test_bootstrap_of_a_mean_holds_it_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.5, 1.0, 100), rng.normal(0.5, 1.0, 2500)
    lo_s, hi_s = bootstrap(lambda idx: small[idx].mean(), len(small), n_boot=400)
    lo_l, hi_l = bootstrap(lambda idx: large[idx].mean(), len(large), n_boot=400)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert lo_l < 0.5 < hi_l
    # width ~ 2 * 1.96 / sqrt(n): 0.39 at 100, 0.078 at 2500
    assert hi_s - lo_s == pytest.approx(0.39, rel=0.25) and hi_l - lo_l == pytest.approx(0.078, rel=0.25)
    # the same seed gives the same interval
    assert bootstrap(lambda idx: small[idx].mean(), 100, n_boot=400) == (lo_s, hi_s)


def test_paired_bootstrap_clear_difference_and_none():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, 200)
    b = a + 0.3 + rng.normal(0.0, 0.1, 200)   # every item better by about 0.3
    r = paired_bootstrap(lambda i: a[i].mean(), lambda i: b[i].mean(), 200, n_boot=500)
    assert r["diff"] == pytest.approx(b.mean() - a.mean())
    assert r["ci"][0] > 0.25 and r["ci"][1] < 0.35
    # no bootstrap diff <= 0: p = 2 * (0 + 1) / 501, the smallest it can be
    assert r["p"] == pytest.approx(2 / 501)
    # se of a mean of 200 differences with sd 0.1: 0.1 / sqrt(200) = 0.0071
    assert r["se"] == pytest.approx(0.1 / math.sqrt(200), rel=0.25)
    same = paired_bootstrap(lambda i: a[i].mean(), lambda i: a[i].mean(), 200, n_boot=500)
    assert same["diff"] == 0.0 and same["p"] == 1.0 and same["se"] == 0.0 and same["ci"] == (0.0, 0.0)
    # pairing matters: a and b share their noise, so the paired se is far below the unpaired one (~0.1)
    assert r["se"] < 0.03


# ---------------------------------------------------------------------------------------------------- timing


def test_timed_calls_warmup_plus_repeat_and_summarizes():
    calls = []
    t = timed(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(calls) == 6 and t["n"] == 4 and len(t["runs"]) == 4
    assert t["min"] <= t["median"] <= t["max"] and all(s >= 0 for s in t["runs"])
    with pytest.raises(ClipBlipError, match="repeat"):
        timed(lambda: None, repeat=0)


def test_summarize_times_and_overlap():
    a = summarize_times([0.3, 0.1, 0.2])
    assert a == {"median": 0.2, "min": 0.1, "max": 0.3, "n": 3, "runs": [0.3, 0.1, 0.2]}
    assert spreads_overlap(a, summarize_times([0.25, 0.5])) and spreads_overlap(summarize_times([0.25, 0.5]), a)
    assert not spreads_overlap(a, summarize_times([0.4, 0.5])) and not spreads_overlap(summarize_times([0.4]), a)
    with pytest.raises(ClipBlipError, match="at least one"):
        summarize_times([])
