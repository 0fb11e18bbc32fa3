"""The seed report's CLIP-vs-BLIP claims, each checked by a stated rule against the numbers in a results dict.

`evaluate_claims(results)` gives one row per claim: its numbers (formatted) and a verdict. `lookup` and `fmt` are
how the whole report reads a number from results and shows it.
"""

from __future__ import annotations

import numbers

from .. import stats

KINDS = ("shape", "color", "count")
EDITS = ("attribute_swap", "relation_swap", "count_change", "color_change")


def _at(task: str, path: str, *keys) -> list:
    """One results path per key: _at("cost", "clip", "params", "param_bytes") gives two."""
    return [(task, path, *(k if isinstance(k, tuple) else (k,))) for k in keys]


# The seed report's comparison rows. "clip"/"blip" are paths into results, compared pairwise; a string instead of
# paths is a capability the model lacks. Rules: "higher:<side>" / "lower:<side>": <side>'s number is the higher
# (lower) one; "only:blip": every BLIP number is above 0 (its interval's low end, where it has one).
R1, PER_EDIT = (("t2i", "r1"), ("i2t", "r1")), [("per_type", e) for e in EDITS]
QUERY = ("query", "10000")
CLAIMS = [
    {"claim": "CLIP is the choice for zero-shot classification", "rule": "higher:clip",
     "measured": "zero-shot accuracy, shape / color / count (BLIP: ITC embeddings)",
     "clip": _at("zero_shot", "clip", *KINDS), "blip": _at("zero_shot", "blip_itc", *KINDS)},
    {"claim": "BLIP retrieves better than CLIP thanks to fine-grained (ITM) matching", "rule": "higher:blip",
     "measured": "R@1 text-to-image / image-to-text (BLIP: ITC shortlist reranked by ITM)",
     "clip": _at("retrieval", "clip", *R1), "blip": _at("retrieval", "blip_itm", *R1)},
    {"claim": "BLIP's ITM fusion aligns image and text finer: better on compositional hard negatives",
     "rule": "higher:blip", "measured": "compositional probe accuracy, all edits (BLIP: ITM scores)",
     "clip": _at("compositional", "clip", "all"), "blip": _at("compositional", "blip_itm", "all")},
    {"claim": "ITM's token-level alignment helps on every kind of edit", "rule": "higher:blip",
     "measured": "probe accuracy per edit: attribute / relation / count / color swap (BLIP: ITM)",
     "clip": _at("compositional", "clip", *PER_EDIT), "blip": _at("compositional", "blip_itm", *PER_EDIT)},
    {"claim": "BLIP's deeper understanding carries over to unseen compositions", "rule": "higher:blip",
     "measured": "held-out color-shape pairs: probe accuracy / t2i R@1 (BLIP: ITM)",
     "clip": _at("heldout", "clip", "compositional", "t2i_r1"),
     "blip": _at("heldout", "blip_itm", "compositional", "t2i_r1")},
    {"claim": "CLIP is computationally efficient", "rule": "lower:clip",
     "measured": "encoding time per image / per text (median of repeated runs), FLOPs per image / per text",
     "clip": _at("cost", "clip", "encode_image", "encode_text", ("flops", "image"), ("flops", "text")),
     "blip": _at("cost", "blip", "encode_image", "encode_text", ("flops", "image"), ("flops", "text"))},
    {"claim": "BLIP is costlier per image-text pair", "rule": "higher:blip",
     "measured": "scoring one new pair from raw inputs (CLIP: encode both, a dot product; BLIP: image encode + "
                 "ITM): time / FLOPs; one text query over 10,000 precomputed images (BLIP: ITM rerank of the "
                 "top 16 / top 128)",
     "clip": _at("cost", "clip", ("pair", "itc"), ("flops", "pair"), (*QUERY, "itc"), (*QUERY, "itc")),
     "blip": _at("cost", "blip", ("pair", "itm"), ("flops", "pair"), (*QUERY, "itm_16"), (*QUERY, "itm_128"))},
    {"claim": "BLIP is the bigger model (encoders + fusion + decoder)", "rule": "higher:blip",
     "measured": "parameters / parameter bytes / peak activation memory (each model on its own)",
     "clip": _at("cost", "clip", "params", "param_bytes", "peak_activation_mb"),
     "blip": _at("cost", "blip", "params", "param_bytes", "peak_activation_mb")},
    {"claim": "BLIP generates captions, CLIP cannot", "rule": "only:blip", "measured": "caption BLEU-4 / CIDEr",
     "clip": "cannot (no decoder)", "blip": _at("captioning", "blip", "bleu4", "cider")},
    {"claim": "BLIP answers visual questions, CLIP cannot", "rule": "only:blip",
     "measured": "VQA accuracy, generated answers", "clip": "cannot (no decoder)",
     "blip": _at("vqa", "blip", ("generate", "overall"))},
    {"claim": "With the same minimal-edit negatives, ITM fusion binds better than contrastive embeddings",
     "rule": "higher:blip",
     "measured": "probe accuracy per edit after fine-tuning with minimal-edit negatives (compare --binding: arm B, "
                 "CLIP + NegCLIP edits, vs arm D, BLIP with the edits among ITM's negatives; test split): "
                 "attribute / relation / count / color swap",
     "clip": _at("binding_probe", "clip", *PER_EDIT), "blip": _at("binding_probe", "blip_itm", *PER_EDIT)},
    {"claim": "CapFilt bootstraps cleaner data from noisy captions", "rule": "only:blip",
     "measured": "a CLIP trained on BLIP's CapFilt corpus vs on the noisy one (same images, same budget): t2i R@1 "
                 "gain / share of the noisy-to-clean gap closed (compare --capfilt)",
     "clip": "cannot (no captioner)", "blip": _at("capfilt", "blip", "r1_gain", "gap_closed")},
]
RULE_TEXT = {"higher:clip": "CLIP higher", "higher:blip": "BLIP higher", "lower:clip": "CLIP lower",
             "only:blip": "BLIP's numbers > 0"}
ALPHA = 0.05
# Two timings differ only when their ranges do not overlap and their medians are more than 10% apart: on a shared
# 2-core machine the same computation (shapes-clip's and shapes-blip's identical image towers) timed in two
# separate runs of 5 came out 6% apart with disjoint ranges.
TIME_FLOOR = 0.10


def test_key(clip_path: tuple, blip_path: tuple) -> str:
    """The key of a pair's paired test in results["tests"]."""
    return f"{'.'.join(clip_path)} vs {'.'.join(blip_path)}"


def paired_measures() -> list[tuple[tuple, tuple]]:
    """Every (CLIP path, BLIP path) pair the claims compare: what benchmark tests."""
    return [(c, b) for claim in CLAIMS if not isinstance(claim["clip"], str) for c, b in zip(claim["clip"],
                                                                                           claim["blip"])]


def lookup(d, *keys):
    """d[k1][k2]... or None where a key is missing (results omit what a run did not measure)."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


FORMATS = {"n": "{:.0f}", "n_images": "{:.0f}", "cider": "{:.3f}", "r1_gain": "{:+.1%}", "diff": "{:+.1%}",
           "roc_auc": "{:.3f}", "peak_activation_mb": "{:.1f} MB"}
FLOP_KEYS = ("image", "text", "pair", "itm_pair")  # the keys of results["cost"][path]["flops"]


def is_timing(v) -> bool:
    """A repeated timing (stats.summarize_times): shown and compared by its median and spread."""
    return isinstance(v, dict) and "median" in v and "min" in v and "max" in v


def _seconds(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def fmt(key: str, v) -> str:
    """One number as the report shows it; the key says its unit (other fractions are shown as percentages)."""
    if v is None:
        return "—"
    if is_timing(v):
        return f"{_seconds(v['median'])} ({_seconds(v['min'])}–{_seconds(v['max'])})"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numbers.Real: numpy scalars too
        return str(v)
    if key == "bleu4":
        return f"{100 * v:.1f}"
    if key == "params":
        return f"{v / 1e6:.1f}M"
    if key == "param_bytes":
        return f"{v / 2**20:.1f} MB"
    if key in FLOP_KEYS:
        return f"{v / 1e6:.1f} MFLOP"
    if key.endswith("_per_s"):
        return f"{v:.1f}/s"
    return FORMATS.get(key, "{:.1%}").format(v)


def fmt_ci(key: str, v, ci) -> str:
    """A number with its 95% interval, "62.7% (58.1%–67.0%)"; the number alone where it has none."""
    if v is None or not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return fmt(key, v)
    return f"{fmt(key, v)} ({fmt(key, ci[0])}–{fmt(key, ci[1])})"


def interval(results: dict, path: tuple):
    """The interval of the number at `path`: in its model path's "ci" tree, or (VQA, one tree per mode) beside it."""
    found = lookup(results, path[0], path[1], "ci", *path[2:])
    return found if found is not None else lookup(results, *path[:-1], "ci", path[-1])


def _outcome(rule: str, a, b, test: dict | None, p: float | None) -> tuple[str, str]:
    """("for" | "against" | "ns", what decided it) for one pair of numbers under a claim's rule."""
    if is_timing(a) and is_timing(b):
        if stats.spreads_overlap(a, b):
            return "ns", f"spreads overlap ({a['n']} and {b['n']} runs)"
        if max(a["median"], b["median"]) < (1 + TIME_FLOOR) * min(a["median"], b["median"]):
            return "ns", f"medians within {TIME_FLOOR:.0%}"
        a, b, note = a["median"], b["median"], "spreads apart"
    elif test is not None:
        note = f"p = {p:.2g}"
        if p >= ALPHA:
            return "ns", note
    else:
        note = "exact"
        if a == b:
            return "ns", "equal counts"
    side_is_higher = (a > b) == rule.endswith("clip")
    return ("for" if side_is_higher == rule.startswith("higher") else "against"), note


def _not_significant(tests: list[dict], notes: list[str]) -> str:
    """The verdict when no pair differs: at which n, and about how many items would show the difference seen (the
    test closest to it); without a statistical test, what the spreads and counts showed."""
    if not tests:
        return f"no significant difference ({'; '.join(dict.fromkeys(notes))})"
    best = min(tests, key=lambda t: t.get("detect_n") or float("inf"))
    unit = best.get("unit", "items")
    more = (f"; about {best['detect_n']:,} {unit} would detect a difference of this size"
            if best.get("detect_n") else "")
    return f"no significant difference at n = {best['n']:,} {unit}{more}"


def _verdict(outcomes: list[str], ns_tests: list[dict], notes: list[str]) -> str:
    if not outcomes:
        return "not measured"
    won, lost = "for" in outcomes, "against" in outcomes
    if won and lost:
        return "mixed"
    return "supported" if won else "contradicted" if lost else _not_significant(ns_tests, notes)


def _only_blip(values: list, cis: list) -> str:
    if not values or any(v is None for v in values):
        return "not measured"
    low = [ci[0] if isinstance(ci, (list, tuple)) else v for v, ci in zip(values, cis)]
    return "supported" if all(x > 0 for x in low) else "not supported"


def _cell(results: dict, paths: list) -> str:
    values = [lookup(results, *p) for p in paths]
    if all(v is None for v in values):
        return "not measured"
    return " / ".join(fmt_ci(p[-1], v, interval(results, p)) for p, v in zip(paths, values))


def adjusted_p(results: dict) -> dict[str, float]:
    """Holm-adjusted p-values of every paired test the claims table reads (results["tests"]), by test key."""
    tests = results.get("tests") or {}
    keys = [k for k in (test_key(c, b) for c, b in paired_measures()) if k in tests]
    keys = list(dict.fromkeys(keys))
    return dict(zip(keys, stats.holm([tests[k]["p"] for k in keys])))


def _judged(c: dict, results: dict, adjusted: dict) -> tuple[str, str]:
    """(verdict, the test cell) of one comparative claim."""
    outcomes, notes, ns_tests = [], [], []
    for cp, bp in zip(c["clip"], c["blip"]):
        a, b = lookup(results, *cp), lookup(results, *bp)
        if a is None or b is None:
            continue
        key = test_key(cp, bp)
        test = (results.get("tests") or {}).get(key)
        outcome, note = _outcome(c["rule"], a, b, test, adjusted.get(key))
        outcomes.append(outcome)
        notes.append(note)
        if outcome == "ns" and test is not None:
            ns_tests.append(test)
    return _verdict(outcomes, ns_tests, notes), " / ".join(notes) or "—"


BINDING_ARMS = {"clip": ("B", "clip"), "blip_itm": ("D", "blip_itm")}  # the binding question's two arms


def with_binding(results: dict) -> dict:
    """results plus "binding_probe" and its tests, read from the binding experiment's results (results["binding"],
    compare --binding) in the layout the claims read: arm B's CLIP and arm D's ITM probe per edit type on the test
    split, with their intervals and the experiment's exact McNemar test of each edit type (raw p)."""
    b = results.get("binding")
    if not b:
        return results
    probe, tests = {}, dict(results.get("tests") or {})
    for path, (arm, way) in BINDING_ARMS.items():
        per = lookup(b, "arms", arm, "probe", "test", way, "per_type") or {}
        probe[path] = {"per_type": {t: s["acc"] for t, s in per.items()},
                       "ci": {"per_type": {t: s["ci"] for t, s in per.items()}}}
    for t in b.get("tests", []):
        if t["a"] == " ".join(BINDING_ARMS["clip"]) and t["b"] == " ".join(BINDING_ARMS["blip_itm"]) \
                and t["split"] == "test":
            key = test_key(("binding_probe", "clip", "per_type", t["type"]),
                           ("binding_probe", "blip_itm", "per_type", t["type"]))
            tests[key] = {"method": "exact McNemar", "n": t["n"], "unit": "probe pairs", "diff": t["diff"],
                          "p": t["p"], "detect_n": stats.items_to_detect_paired(t["only_a"], t["only_b"], t["n"])}
    return {**results, "binding_probe": probe, "tests": tests}


def evaluate_claims(results: dict) -> list[dict]:
    """The claims table: per claim its numbers with intervals (joined by ' / '), the test of each CLIP-vs-BLIP pair
    (p Holm-adjusted over the table; timings by their spreads; counts exactly) and the verdict: supported,
    contradicted, mixed, or no significant difference (with about how many items would detect it)."""
    results = with_binding(results)
    adjusted, rows = adjusted_p(results), []
    for c in CLAIMS:
        blip = _cell(results, c["blip"])
        if isinstance(c["clip"], str):
            values = [lookup(results, *p) for p in c["blip"]]
            clip, test = c["clip"], "interval above 0"
            verdict = _only_blip(values, [interval(results, p) for p in c["blip"]])
        else:
            clip = _cell(results, c["clip"])
            verdict, test = _judged(c, results, adjusted)
        rows.append({"claim": c["claim"], "measured": f"{c['measured']}; rule: {RULE_TEXT[c['rule']]}",
                     "clip": clip, "blip": blip, "test": test, "verdict": verdict})
    return rows
