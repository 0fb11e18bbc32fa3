"""The report's content as a list of blocks (headings, paragraphs, code, tables, images), built from a results dict.

Both documents are rendered from this one list (render.py), so the markdown and the HTML cannot drift apart. A
section whose results are missing is left out; every number shown is one found in results.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

from .claims import evaluate_claims, fmt, fmt_ci, lookup


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # 1: the title, 2: a section, 3: an example


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    headers: list
    rows: list  # of lists of cells, one per header


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report's folder
    alt: str
    css_class: str  # "plot" or "example": the stylesheet sizes them differently


Block = Heading | Paragraph | Code | Table | Image

PATH_NAMES = {"clip": "CLIP", "blip_itc": "BLIP ITC", "blip_itm": "BLIP ITM", "blip": "BLIP"}
TITLE = "CLIP vs BLIP, measured on the same data"
SECTIONS = {
    "claims": "The report's claims, measured", "zero_shot": "Zero-shot classification",
    "retrieval": "Image-text retrieval", "compositional": "Compositional probe (hard negatives)",
    "heldout": "Held-out compositions", "captioning": "Captioning", "vqa": "Visual question answering",
    "cost": "Cost", "capfilt": "CapFilt: bootstrapping a clean corpus", "plots": "Plots", "examples": "Examples",
    "targets": "Targets",
}
PATHS_NOTE = ("Paths: CLIP = CLIP's embeddings; BLIP ITC = BLIP's unimodal ITC embeddings; BLIP ITM = BLIP's "
              "ITC shortlist reranked by ITM (retrieval) or ITM scores (probe); BLIP = the decoder (captions, VQA).")
CAPFILT_METRICS = (("t2i R@1", "t2i_r1"), ("zero-shot shape", "zs_shape"), ("zero-shot color", "zs_color"),
                   ("zero-shot count", "zs_count"))


def union(dicts) -> list:
    """The keys of all `dicts` (None counts as empty), in first-seen order."""
    keys = []
    for d in dicts:
        keys += [k for k in (d or {}) if k not in keys]
    return keys


def model_paths(d: dict) -> list:
    """The model paths in `d`, known ones first in a fixed order so tables line up across sections."""
    return [p for p in PATH_NAMES if p in d] + [p for p in d if p not in PATH_NAMES]


def _path_table(d: dict, columns: list) -> Table:
    """A table with one row per model path; columns are (header, keys into that path's dict)."""
    rows = [[PATH_NAMES.get(p, p)] + [fmt_ci(keys[-1], lookup(d[p], *keys), lookup(d[p], "ci", *keys))
                                      for _, keys in columns] for p in model_paths(d)]
    return Table(["path"] + [h for h, _ in columns], rows)


def _zero_shot(d: dict) -> list[Block]:
    return [Heading(SECTIONS["zero_shot"]), Paragraph("Accuracy per label kind."),
            _path_table(d, [(k, (k,)) for k in union(d.values()) if k != "ci"])]


def _retrieval(d: dict) -> list[Block]:
    cols = [(f"{way} R@{k}", (way, f"r{k}")) for way in ("t2i", "i2t") for k in (1, 5, 10)]
    return [Heading(SECTIONS["retrieval"]), Paragraph("Recall@K, text-to-image (t2i) and image-to-text (i2t)."),
            _path_table(d, cols)]


def _compositional(d: dict) -> list[Block]:
    types = union(v.get("per_type") for v in d.values())
    cols = [("all", ("all",))] + [(t, ("per_type", t)) for t in types] + [("n", ("n",))]
    return [Heading(SECTIONS["compositional"]),
            Paragraph("Accuracy at scoring the true caption above its edited hard negative, per edit type. An "
                      "attribute or relation swap keeps every word of the caption and changes only what binds to "
                      "what; 50% is chance. BLIP's ITM learns from in-batch hard negatives (the most similar other "
                      "captions), and a random batch almost never holds a swap of the true caption: whether that is "
                      "why ITM does not bind better is what the binding experiment tests (compare --binding)."),
            _path_table(d, cols)]


def _heldout(d: dict) -> list[Block]:
    return [Heading(SECTIONS["heldout"]), Paragraph("On color-shape pairs never seen in training."),
            _path_table(d, [("compositional", ("compositional",)), ("t2i R@1", ("t2i_r1",))])]


def _captioning(d: dict) -> list[Block]:
    cols = [("BLEU-4", ("bleu4",)), ("CIDEr", ("cider",)), ("facts true", ("facts_true",)),
            ("objects mentioned", ("objects_mentioned",)), ("n", ("n",))]
    return [Heading(SECTIONS["captioning"]), Paragraph("BLEU-4 (x100) and CIDEr against the reference captions."),
            _path_table(d, cols)]


def _vqa(d: dict) -> list[Block]:
    modes = {f"{m} {mode}": v for m, modes in d.items() for mode, v in modes.items()}
    types = union(v.get("per_type") for v in modes.values())
    cols = [("overall", ("overall",))] + [(t, ("per_type", t)) for t in types] + [("n", ("n",))]
    rows = [[name.replace("blip", "BLIP", 1)] + [fmt_ci(k[-1], lookup(v, *k), lookup(v, "ci", *k)) for _, k in cols]
            for name, v in modes.items()]
    return [Heading(SECTIONS["vqa"]), Paragraph("Accuracy per question type; answers generated or ranked."),
            Table(["model / mode"] + [h for h, _ in cols], rows)]


COST_ROWS = (("parameters", ("params",)), ("parameter bytes", ("param_bytes",)),
             ("peak activation memory", ("peak_activation_mb",)), ("FLOPs per image", ("flops", "image")),
             ("FLOPs per text", ("flops", "text")), ("FLOPs per ITM pair (image tokens given)", ("flops", "itm_pair")),
             ("FLOPs to score a new pair from raw inputs", ("flops", "pair")),
             ("time per image (batch encode)", ("encode_image",)), ("time per text (batch encode)", ("encode_text",)),
             ("score a new pair from raw inputs, ITC", ("pair", "itc")),
             ("score a new pair from raw inputs, ITM", ("pair", "itm")))
QUERY_COLUMNS = (("CLIP", "clip", "itc"), ("BLIP ITC", "blip", "itc"), ("BLIP ITC + ITM top 16", "blip", "itm_16"),
                 ("BLIP ITC + ITM top 128", "blip", "itm_128"))


def _cost(d: dict) -> list[Block]:
    models = model_paths(d)
    rows = [[label] + [fmt(keys[-1], lookup(d, m, *keys)) for m in models] for label, keys in COST_ROWS
            if any(lookup(d, m, *keys) is not None for m in models)]
    out = [Heading(SECTIONS["cost"]),
           Paragraph("Per model, each measured on its own, on the machine in the meta line. Times: the median of "
                     "repeated runs, with their range. Peak activation memory: beyond the weights, over one batch of "
                     "32 images and 32 texts (and their 32 ITM pairs for BLIP). FLOPs: counted by "
                     "torch.utils.flop_counter."),
           Table(["measure"] + [PATH_NAMES.get(m, m) for m in models], rows)]
    sizes = union(lookup(d, m, "query") for m in models)
    cols = [(h, m, k) for h, m, k in QUERY_COLUMNS if any(lookup(d, m, "query", n, k) for n in sizes)]
    if sizes and cols:
        out += [Paragraph("One text-to-image query over a gallery of N images whose features are precomputed: encode "
                          "the text, N dot products, the top K; BLIP ITC + ITM also runs ITM on the top K and "
                          "reorders them (the shortlist's image tokens precomputed too)."),
                Table(["gallery N"] + [h for h, _, _ in cols],
                      [[f"{int(n):,}"] + [fmt("query", lookup(d, m, "query", n, k)) for _, m, k in cols]
                       for n in sizes])]
    return out


def _capfilt_section(c: dict) -> list[Block]:
    """The filter's precision/recall per noise type, and CLIP trained on the noisy, CapFilt and clean corpora."""
    s = c.get("settings", {})
    out = [Heading(SECTIONS["capfilt"]),
           Paragraph(f"{s.get('n')} web images, one caption each, {fmt('noise', s.get('noise'))} of them noisy (half "
                     "another scene's caption, half one colour or count changed). BLIP writes one synthetic caption "
                     "per image (nucleus sampling, top-p 0.9) and its ITM head keeps a caption at match probability "
                     f">= {c.get('threshold', 0):.3f} (calibrated on {s.get('calibration_n')} labelled web images of "
                     f"other scenes). Kept: {lookup(c, 'kept', 'original')} original and "
                     f"{lookup(c, 'kept', 'synthetic')} synthetic captions; {c.get('images_without_captions')} images "
                     "lost every caption.")]
    q = c.get("filter") or {}
    kinds = [k for k, v in q.items() if isinstance(v, dict)]
    if kinds:
        cols = (("precision", "precision"), ("recall", "recall"), ("clean removed", "clean_removed"),
                ("ROC AUC", "roc_auc"), ("n", "n"))
        out += [Paragraph("Removing noisy original captions, per noise type (each type against the clean captions)."),
                Table(["noise"] + [h for h, _ in cols],
                      [[k] + [fmt_ci(key, q[k].get(key), lookup(q, k, "ci", key)) for _, key in cols]
                       for k in kinds])]
    scores = c.get("scores") or {}
    if scores:
        budget = f"{s.get('steps')} steps x {s.get('batch_size')}"
        rows = [[name] + [fmt_ci(key, lookup(scores, name, key), lookup(c, "ci", name, key))
                          for _, key in CAPFILT_METRICS] for name in scores]
        rows.append(["gap closed"] + [_gap_cell(c, key) for _, key in CAPFILT_METRICS])
        out += [Paragraph(f"A shapes-clip model trained on each corpus ({budget} samples), on the clean test split. "
                          "95% intervals: Wilson for the scores (independent test items), a bootstrap over the test "
                          "items for the gap closed = (capfilt - noisy) / (clean - noisy). The gap is undefined (—) "
                          "where clean beats noisy by less than 2 points, and its interval unbounded where some "
                          "resample does."),
                Table(["corpus"] + [h for h, _ in CAPFILT_METRICS], rows)]
    out += _capfilt_tests(c)
    if c.get("plot_file"):
        out.append(Image(c["plot_file"], "CapFilt scores and ROC/PR", "plot"))
    return out


def _gap_cell(c: dict, key: str) -> str:
    gap, cis = lookup(c, "gap_closed", key), lookup(c, "ci", "gap_closed") or {}
    if gap is not None and key in cis and cis[key] is None:  # its interval was sought, and has no bound
        return f"{fmt(key, gap)} (unbounded)"
    return fmt_ci(key, gap, cis.get(key))


def _capfilt_tests(c: dict) -> list[Block]:
    """The R@1 gain with its interval, and CapFilt's CLIP tested against the noisy and the clean corpus's."""
    tests, gain = c.get("tests") or [], lookup(c, "blip", "r1_gain")
    if not tests or gain is None:
        return []
    cells = {(t["against"], t["metric"]): f"{fmt('r1_gain', t['diff'])}, p = {t['p_holm']:.2g}" for t in tests}
    return [Paragraph(f"t2i R@1 gain of CapFilt's corpus over the noisy one: "
                      f"{fmt_ci('r1_gain', gain, lookup(c, 'blip', 'ci', 'r1_gain'))} (paired bootstrap over the "
                      f"{tests[0]['n']} queries). CapFilt's CLIP against the others on the same test items: its "
                      "score minus theirs, exact McNemar p Holm-corrected over the table."),
            Table(["CapFilt against"] + [h for h, _ in CAPFILT_METRICS],
                  [[f"{other} corpus"] + [cells.get((other, key), "—") for _, key in CAPFILT_METRICS]
                   for other in ("noisy", "clean")])]


# The task sections in the report's order: (results key, builder of its blocks from results[key]).
TASK_SECTIONS = (("zero_shot", _zero_shot), ("retrieval", _retrieval), ("compositional", _compositional),
                 ("heldout", _heldout), ("captioning", _captioning), ("vqa", _vqa), ("cost", _cost),
                 ("capfilt", _capfilt_section))


def _meta_blocks(m: dict) -> list[Block]:
    meta = (f"Date: {m.get('date', '?')} · Machine: {m.get('machine', '?')} · Data: {m.get('data', '?')} "
            f"({fmt('n_images', m.get('n_images'))} images) · CLIP: {m.get('clip') or 'none'} · "
            f"BLIP: {m.get('blip') or 'none'}")
    return [Heading(TITLE, 1), Paragraph(meta), Code(m.get("command", "")), Paragraph(PATHS_NOTE)]


def _claims_section(r: dict) -> list[Block]:
    rows = [[c["claim"], c["measured"], c["clip"], c["blip"], c["test"], c["verdict"]] for c in evaluate_claims(r)]
    return [Heading(SECTIONS["claims"]),
            Paragraph("Claims of the seed report (CLIP vs BLIP), each checked by its stated rule on this run's "
                      "numbers; \"not measured\" where this run has none for it. Each rate carries its 95% interval "
                      "(Wilson for shares of independent items, bootstrap over images for R@K, BLEU and CIDEr). Each "
                      "CLIP-vs-BLIP pair of numbers is tested on the same items (exact McNemar for right/wrong "
                      "outcomes, paired bootstrap over images for R@K), its p-value Holm-adjusted over the whole "
                      "table; a timing is the median of repeated runs with their range, and counts as a difference "
                      "only when the ranges do not overlap and the medians are more than 10% apart; parameter and "
                      "FLOP counts are exact. Verdict: supported when at least one pair differs significantly in "
                      "the claim's direction and none against it, contradicted the other way round, mixed when "
                      "both, and otherwise no significant difference (with about how many items would detect a "
                      "difference of the size seen)."),
            Table(["claim", "what we measured", "CLIP", "BLIP", "test", "verdict"], rows)]


def _example_blocks(examples: list) -> list[Block]:
    out = [Heading(SECTIONS["examples"])]
    for ex in examples:
        rows = [["ground truth", ex.get("truth") or "—"]]
        if ex.get("caption") is not None:
            rows.append(["BLIP caption", ex["caption"]])
        for qa in ex.get("vqa") or []:
            answer, truth = str(qa.get("answer") or "—"), str(qa.get("truth") or "—")
            mark = "✓" if answer.strip().lower() == truth.strip().lower() else "✗"
            rows.append([f"Q: {qa.get('question', '')}", f"{answer} (truth: {truth}) {mark}"])
        if ex.get("retrieval"):
            top = ", ".join(map(str, ex["retrieval"].get("top", [])))
            rows.append([f"retrieval: {ex['retrieval'].get('query', '')}", top])
        out.append(Heading(f"Example {ex.get('id', '')}", 3))
        out += [Image(ex["image"], str(ex.get("id", "")), "example")] if ex.get("image") else []
        out.append(Table(["", ""], rows))
    return out


def _target_cell(t: dict) -> str:
    # A target states its own unit: "≥ 90%" or "≥ 15 points" means a fraction, shown as a percentage (points).
    v = t.get("value")
    if not isinstance(v, numbers.Real):
        return fmt("value", v)
    goal = str(t.get("target", ""))
    return fmt_ci("pct", v, t.get("ci")) if "%" in goal or "point" in goal else f"{v:.4g}"


def _targets_section(targets: list) -> list[Block]:
    rows = [[t.get("name", ""), t.get("target", ""), _target_cell(t),
             {True: "met", False: "missed"}.get(t.get("met"), "not measured")] for t in targets]
    return [Heading(SECTIONS["targets"]), Table(["target", "goal", "measured", "result"], rows)]


def report_blocks(r: dict, examples: list, plots: dict[str, Path], experiments: list | None = None) -> list[Block]:
    """The whole report: title and meta, the claims, one section per measured task, the experiments' sections
    (`experiments`, blocks built elsewhere: the binding experiment's), plots, examples, targets.

    `plots` maps a plot's name to its file, which lies in the report's folder."""
    out = _meta_blocks(r["meta"]) + _claims_section(r)
    for task, build in TASK_SECTIONS:
        if r.get(task):
            out += build(r[task])
    out += experiments or []
    if plots:
        out += [Heading(SECTIONS["plots"])] + [Image(p.name, name, "plot") for name, p in plots.items()]
    if examples:
        out += _example_blocks(examples)
    if r.get("targets"):
        out += _targets_section(r["targets"])
    return out
