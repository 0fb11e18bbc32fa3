"""The claims table's verdicts: paired tests, Holm's correction, timing spreads and exact counts decide them; and the
per-item plumbing (eval/uncertainty.py) that the tests are computed from."""

import numpy as np
import pytest

from clipblip import stats
from clipblip.eval import benchmark, claims, uncertainty

PROBE = "compositional hard negatives"  # the claim "BLIP's ITM fusion ... better on compositional hard negatives"
KEY = claims.test_key(("compositional", "clip", "all"), ("compositional", "blip_itm", "all"))


def _timing(lo, hi, n=5):
    return {"median": (lo + hi) / 2, "min": lo, "max": hi, "n": n, "runs": []}


def _probe_results(clip=0.70, blip=0.78, p=0.001, detect_n=None):
    return {"compositional": {"clip": {"all": clip}, "blip_itm": {"all": blip}},
            "tests": {KEY: {"method": "exact McNemar", "n": 400, "unit": "probe pairs", "diff": blip - clip, "p": p,
                            "detect_n": detect_n}}}


def _claim(results, words):
    return next(c for c in claims.evaluate_claims(results) if words in c["claim"])


def test_a_significant_difference_in_the_claims_direction_supports_it():
    assert _claim(_probe_results(), PROBE)["verdict"] == "supported"
    assert _claim(_probe_results(), PROBE)["test"] == "p = 0.001"


def test_a_significant_difference_against_it_contradicts_it():
    assert _claim(_probe_results(clip=0.85, blip=0.78), PROBE)["verdict"] == "contradicted"


def test_no_significant_difference_says_n_and_the_items_that_would_detect_it():
    row = _claim(_probe_results(clip=0.77, blip=0.78, p=0.41, detect_n=5123), PROBE)
    assert row["verdict"] == ("no significant difference at n = 400 probe pairs; about 5,123 probe pairs would "
                              "detect a difference of this size")


def test_holm_adjusts_over_the_whole_table():
    # alone p = 0.03 is significant; with a second test of p = 0.04, Holm gives 2 * 0.03 = 0.06 and 0.06
    results = _probe_results(p=0.03)
    assert _claim(results, PROBE)["verdict"] == "supported"
    zs = (("zero_shot", "clip", "shape"), ("zero_shot", "blip_itc", "shape"))
    results["zero_shot"] = {"clip": {"shape": 0.9}, "blip_itc": {"shape": 0.8}}
    results["tests"][claims.test_key(*zs)] = {"n": 50, "unit": "images", "diff": -0.1, "p": 0.04, "detect_n": 60}
    assert claims.adjusted_p(results) == pytest.approx({KEY: 0.06, claims.test_key(*zs): 0.06})
    assert _claim(results, PROBE)["verdict"].startswith("no significant difference at n = 400")
    assert _claim(results, "zero-shot")["verdict"].startswith("no significant difference at n = 50 images")


def test_mixed_when_pairs_differ_both_ways():
    per = {"attribute_swap": (0.5, 0.9, 0.001), "relation_swap": (0.8, 0.6, 0.001)}
    results = {"compositional": {"clip": {"per_type": {}}, "blip_itm": {"per_type": {}}}, "tests": {}}
    for edit, (c, b, p) in per.items():
        results["compositional"]["clip"]["per_type"][edit] = c
        results["compositional"]["blip_itm"]["per_type"][edit] = b
        key = claims.test_key(("compositional", "clip", "per_type", edit), ("compositional", "blip_itm", "per_type",
                                                                           edit))
        results["tests"][key] = {"n": 100, "diff": b - c, "p": p}
    assert _claim(results, "every kind of edit")["verdict"] == "mixed"


def test_timings_count_only_when_their_spreads_do_not_overlap():
    results = {"cost": {"clip": {"encode_image": _timing(1.0, 2.0)}, "blip": {"encode_image": _timing(1.9, 3.0)}}}
    row = _claim(results, "computationally efficient")
    assert row["verdict"] == "no significant difference (spreads overlap (5 and 5 runs))"
    results["cost"]["blip"]["encode_image"] = _timing(2.1, 3.0)
    assert _claim(results, "computationally efficient")["verdict"] == "supported"  # CLIP lower, apart
    results["cost"]["clip"]["encode_image"] = _timing(3.1, 3.2)
    assert _claim(results, "computationally efficient")["verdict"] == "contradicted"
    # apart, but medians 3.15 and 3.0 are within 10% of each other: the same work timed twice differs that much
    results["cost"]["blip"]["encode_image"] = _timing(2.9, 3.05)
    assert _claim(results, "computationally efficient")["verdict"] == "no significant difference (medians within 10%)"


def test_counts_are_compared_exactly():
    results = {"cost": {"clip": {"params": 100, "param_bytes": 400}, "blip": {"params": 120, "param_bytes": 400}}}
    row = _claim(results, "bigger model")
    assert row["verdict"] == "supported" and row["test"] == "exact / equal counts"
    assert row["clip"] == "0.0M / 0.0 MB / —"


def test_only_blip_needs_the_interval_above_zero():
    results = {"captioning": {"blip": {"bleu4": 0.3, "cider": 1.2, "ci": {"bleu4": [0.2, 0.4], "cider": [0.9, 1.5]}}}}
    assert _claim(results, "generates captions")["verdict"] == "supported"
    results["captioning"]["blip"]["ci"]["cider"] = [0.0, 1.5]
    assert _claim(results, "generates captions")["verdict"] == "not supported"
    assert _claim({}, "generates captions")["verdict"] == "not measured"
    # CapFilt's R@1 gain: a positive gain whose interval reaches below 0 does not support the claim
    capfilt = {"capfilt": {"blip": {"r1_gain": 0.02, "gap_closed": 0.3, "ci": {"r1_gain": [-0.01, 0.05]}}}}
    assert _claim(capfilt, "CapFilt")["verdict"] == "not supported"
    capfilt["capfilt"]["blip"]["ci"]["r1_gain"] = [0.004, 0.05]
    assert _claim(capfilt, "CapFilt")["verdict"] == "supported"


def test_cells_show_each_number_with_its_interval():
    results = _probe_results()
    results["compositional"]["clip"]["ci"] = {"all": [0.651, 0.747]}
    assert _claim(results, PROBE)["clip"] == "70.0% (65.1%–74.7%)"


# ---------------------------------------------------------------------------------------------------- uncertainty

def _ranks(t2i, owner, i2t):
    return uncertainty.retrieval_items({"t2i": t2i, "i2t": i2t, "i2t_images": list(range(len(i2t))),
                                        "shape": (len(t2i), len(i2t))}, owner)


def test_retrieval_resamples_whole_images():
    # 3 images, captions (0, 0, 1, 2, 2): t2i hits at R@1 are [1, 0 | 1 | 0, 0]
    items = _ranks([0, 3, 0, 1, 2], [0, 0, 1, 2, 2], [0, 0, 4])
    stat = uncertainty._retrieval_stat(items, "t2i", 1)
    assert stat(np.array([0, 1, 2])) == pytest.approx(2 / 5)
    assert stat(np.array([1, 1, 0])) == pytest.approx(3 / 4)  # image 1 twice (1 hit each), image 0 (1 of 2)
    assert uncertainty._retrieval_stat(items, "i2t", 1)(np.array([2, 2, 0])) == pytest.approx(1 / 3)
    ci = uncertainty.retrieval_ci(items)
    assert ci["t2i"]["r1"][0] <= 2 / 5 <= ci["t2i"]["r1"][1] and ci["t2i"]["r10"] == [1.0, 1.0]


def test_paired_probe_test_is_mcnemar_on_the_edit_types_items():
    a = {"correct": [True, False, False, True, False], "types": ["s", "s", "s", "c", "c"]}
    b = {"correct": [True, True, True, False, False], "types": ["s", "s", "s", "c", "c"]}
    t = uncertainty.paired("compositional", ("per_type", "s"), a, b)
    assert t["n"] == 3 and t["diff"] == pytest.approx(2 / 3) and t["p"] == stats.mcnemar([1, 0, 0], [1, 1, 1])["p"]
    assert uncertainty.paired("compositional", ("all",), a, b)["n"] == 5
    assert uncertainty.paired("cost", ("params",), {}, {}) is None


def test_benchmark_tests_every_claimed_pair_it_has_items_for():
    probe = {"correct": [True] * 30 + [False] * 10, "types": ["attribute_swap"] * 40}
    better = {"correct": [True] * 40, "types": ["attribute_swap"] * 40}
    tests = benchmark.paired_tests({("compositional", "clip"): probe, ("compositional", "blip_itm"): better})
    assert set(tests) == {KEY, claims.test_key(("compositional", "clip", "per_type", "attribute_swap"),
                                               ("compositional", "blip_itm", "per_type", "attribute_swap"))}
    assert tests[KEY]["p"] == pytest.approx(2 / 1024)  # 10 discordant pairs, all one way: 2 * 0.5**10


def test_a_vqa_mode_keeps_its_interval_beside_its_numbers():
    results = {"vqa": {"blip": {"generate": {"overall": 0.92, "ci": {"overall": [0.88, 0.95]}}}}}
    row = _claim(results, "answers visual questions")
    assert row["blip"] == "92.0% (88.0%–95.0%)" and row["verdict"] == "supported"


def _share(acc, n=100):
    return {"acc": acc, "k": round(acc * n), "n": n, "ci": list(stats.wilson(round(acc * n), n))}


def test_the_binding_experiment_answers_its_claim():
    per = {"B": {"attribute_swap": 0.62, "relation_swap": 0.55}, "D": {"attribute_swap": 0.93, "relation_swap": 0.56}}
    arms = {arm: {"probe": {"test": {way: {"per_type": {t: _share(a) for t, a in per[arm].items()}}}}}
            for arm, way in (("B", "clip"), ("D", "blip_itm"))}
    tests = [{"a": "B clip", "b": "D blip_itm", "split": split, "type": t, "n": 100, "diff": per["D"][t] - per["B"][t],
              "only_a": only_a, "only_b": only_b, "p": stats.mcnemar([1] * only_a + [0] * only_b,
                                                                     [0] * only_a + [1] * only_b)["p"]}
             for split in ("test", "test_heldout") for t, only_a, only_b in (("attribute_swap", 2, 33),
                                                                              ("relation_swap", 10, 11))]
    row = _claim({"binding": {"arms": arms, "tests": tests}}, "same minimal-edit negatives")
    assert row["clip"] == "62.0% (52.2%–70.9%) / 55.0% (45.2%–64.4%) / — / —"  # no count or colour edits here
    assert row["verdict"] == "supported"  # attribute swaps: 33 of 35 discordant pairs for D; relation: no difference
    # Holm over the two test-split tests: 2 * p(2 vs 33) for attribute swaps; relation swaps p = 1
    assert row["test"] == f"p = {2 * stats.mcnemar([1] * 2 + [0] * 33, [0] * 2 + [1] * 33)['p']:.2g} / p = 1"
    assert _claim({}, "same minimal-edit negatives")["verdict"] == "not measured"
