"""The seed report's CLIP-vs-BLIP claims, each checked by a stated rule against the numbers in a results dict.

`evaluate_claims(results)` gives one row per claim: its numbers (formatted) and a verdict. `lookup` and `fmt` are
how the whole report reads a number from results and shows it.
"""

from __future__ import annotations

import numbers

KINDS = ("shape", "color", "count")
EDITS = ("attribute_swap", "relation_swap", "count_change", "color_change")


def _at(task: str, path: str, *keys) -> list:
    """One results path per key: _at("cost", "clip", "params", "peak_memory_mb") gives two."""
    return [(task, path, *(k if isinstance(k, tuple) else (k,))) for k in keys]


# The seed report's comparison rows. "clip"/"blip" are paths into results, compared pairwise; a string instead of
# paths is a capability the model lacks. Rules: "higher:<side>" = supported when <side> is higher on every pair,
# not supported when on none, mixed otherwise; "only:blip" = supported when every BLIP number exists and is > 0.
R1, PER_EDIT = (("t2i", "r1"), ("i2t", "r1")), [("per_type", e) for e in EDITS]
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
    {"claim": "CLIP is computationally efficient", "rule": "higher:clip",
     "measured": "encoding throughput: images/s / texts/s",
     "clip": _at("cost", "clip", "images_per_s", "texts_per_s"),
     "blip": _at("cost", "blip", "images_per_s", "texts_per_s")},
    {"claim": "BLIP is costlier per image-text pair", "rule": "higher:clip",
     "measured": "pairs scored/s: CLIP needs at most one image encode per new pair (images/s), "
                 "BLIP runs its fusion encoder on every pair (ITM pairs/s)",
     "clip": _at("cost", "clip", "images_per_s"), "blip": _at("cost", "blip", "itm_pairs_per_s")},
    {"claim": "BLIP is the bigger model (encoders + fusion + decoder)", "rule": "higher:blip",
     "measured": "parameters / peak memory", "clip": _at("cost", "clip", "params", "peak_memory_mb"),
     "blip": _at("cost", "blip", "params", "peak_memory_mb")},
    {"claim": "BLIP generates captions, CLIP cannot", "rule": "only:blip", "measured": "caption BLEU-4 / CIDEr",
     "clip": "cannot (no decoder)", "blip": _at("captioning", "blip", "bleu4", "cider")},
    {"claim": "BLIP answers visual questions, CLIP cannot", "rule": "only:blip",
     "measured": "VQA accuracy, generated answers", "clip": "cannot (no decoder)",
     "blip": _at("vqa", "blip", ("generate", "overall"))},
    {"claim": "CapFilt bootstraps cleaner data from noisy captions", "rule": "only:blip",
     "measured": "a CLIP trained on BLIP's CapFilt corpus vs on the noisy one (same images, same budget): t2i R@1 "
                 "gain / share of the noisy-to-clean gap closed (compare --capfilt)",
     "clip": "cannot (no captioner)", "blip": _at("capfilt", "blip", "r1_gain", "gap_closed")},
]
RULE_TEXT = {"higher:clip": "CLIP higher on each", "higher:blip": "BLIP higher on each",
             "only:blip": "BLIP's numbers > 0"}


def lookup(d, *keys):
    """d[k1][k2]... or None where a key is missing (results omit what a run did not measure)."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


FORMATS = {"n": "{:.0f}", "n_images": "{:.0f}", "cider": "{:.3f}", "r1_gain": "{:+.1%}", "roc_auc": "{:.3f}",
           "peak_memory_mb": "{:.1f} MB"}


def fmt(key: str, v) -> str:
    """One number as the report shows it; the key says its unit (other fractions are shown as percentages)."""
    if v is None:
        return "—"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numbers.Real: numpy scalars too
        return str(v)
    if key == "bleu4":
        return f"{100 * v:.1f}"
    if key == "params":
        return f"{v / 1e6:.1f}M"
    if key.endswith("_per_s"):
        return f"{v:.1f}/s"
    return FORMATS.get(key, "{:.1%}").format(v)


def _verdict(rule: str, pairs: list) -> str:
    if rule == "only:blip":
        blip = [b for _, b in pairs]
        if not blip or any(b is None for b in blip):
            return "not measured"
        return "supported" if all(b > 0 for b in blip) else "not supported"
    pairs = [(c, b) for c, b in pairs if c is not None and b is not None]
    if not pairs:
        return "not measured"
    wins = sum((c > b) if rule == "higher:clip" else (b > c) for c, b in pairs)
    return "supported" if wins == len(pairs) else "not supported" if wins == 0 else "mixed"


def _cell(paths: list, values: list) -> str:
    if all(v is None for v in values):
        return "not measured"
    return " / ".join(fmt(p[-1], v) for p, v in zip(paths, values))


def evaluate_claims(results: dict) -> list[dict]:
    """The claims table: per claim its numbers (formatted, joined by ' / ') and the verdict of its rule."""
    rows = []
    for c in CLAIMS:
        blip = [lookup(results, *p) for p in c["blip"]]
        if isinstance(c["clip"], str):
            clip, clip_cell = [None] * len(blip), c["clip"]
        else:
            clip = [lookup(results, *p) for p in c["clip"]]
            clip_cell = _cell(c["clip"], clip)
        rows.append({"claim": c["claim"], "measured": f"{c['measured']}; rule: {RULE_TEXT[c['rule']]}",
                     "clip": clip_cell, "blip": _cell(c["blip"], blip),
                     "verdict": _verdict(c["rule"], list(zip(clip, blip)))})
    return rows
