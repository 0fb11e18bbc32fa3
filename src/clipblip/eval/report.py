"""The report of `clipblip compare`: the seed report's CLIP-vs-BLIP claims checked against measured numbers.

`write_report(results, out_dir)` writes results.json, report.md, a self-contained report.html and two PNG plots;
`summary_table(results)` is the CLI's terminal view. The report shows only numbers found in `results` (a claim
without its numbers says "not measured"), so results.json is the whole evidence behind it. Both documents are
rendered from one list of blocks, so the markdown and the HTML cannot drift apart.
"""

from __future__ import annotations

import base64
import html
import json
import numbers
from pathlib import Path

PATH_NAMES = {"clip": "CLIP", "blip_itc": "BLIP ITC", "blip_itm": "BLIP ITM", "blip": "BLIP"}
COST_LABELS = {"params": "parameters", "images_per_s": "images / s", "texts_per_s": "texts / s",
               "captions_per_s": "captions / s", "itm_pairs_per_s": "ITM pairs / s", "peak_memory_mb": "peak memory"}
COLORS = {"clip": "#4c72b0", "blip_itc": "#dd8452", "blip_itm": "#c44e52", "blip": "#8172b3"}
KINDS = ("shape", "color", "count")
EDITS = ("attribute_swap", "relation_swap", "count_change", "color_change")

TITLE = "CLIP vs BLIP, measured on the same data"
SECTIONS = {
    "claims": "The report's claims, measured", "zero_shot": "Zero-shot classification",
    "retrieval": "Image-text retrieval", "compositional": "Compositional probe (hard negatives)",
    "heldout": "Held-out compositions", "captioning": "Captioning", "vqa": "Visual question answering",
    "cost": "Cost", "capfilt": "CapFilt: bootstrapping a clean corpus", "plots": "Plots", "examples": "Examples",
    "targets": "Targets",
}


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
PATHS_NOTE = ("Paths: CLIP = CLIP's embeddings; BLIP ITC = BLIP's unimodal ITC embeddings; BLIP ITM = BLIP's "
              "ITC shortlist reranked by ITM (retrieval) or ITM scores (probe); BLIP = the decoder (captions, VQA).")
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


def _union(dicts) -> list:
    keys = []
    for d in dicts:
        keys += [k for k in (d or {}) if k not in keys]
    return keys


def _paths(d: dict) -> list:
    """The model paths in `d`, known ones first in a fixed order so tables line up across sections."""
    return [p for p in PATH_NAMES if p in d] + [p for p in d if p not in PATH_NAMES]


def _path_table(d: dict, columns: list) -> tuple:
    """A table with one row per model path; columns are (header, keys into that path's dict)."""
    rows = [[PATH_NAMES.get(p, p)] + [fmt(keys[-1], lookup(d[p], *keys)) for _, keys in columns] for p in _paths(d)]
    return ("table", ["path"] + [h for h, _ in columns], rows)


def _task_sections(r: dict) -> list:
    out = []
    if r.get("zero_shot"):
        kinds = _union(r["zero_shot"].values())
        out += [("h2", SECTIONS["zero_shot"]), ("p", "Accuracy per label kind."),
                _path_table(r["zero_shot"], [(k, (k,)) for k in kinds])]
    if r.get("retrieval"):
        cols = [(f"{d} R@{k}", (d, f"r{k}")) for d in ("t2i", "i2t") for k in (1, 5, 10)]
        out += [("h2", SECTIONS["retrieval"]), ("p", "Recall@K, text-to-image (t2i) and image-to-text (i2t)."),
                _path_table(r["retrieval"], cols)]
    if r.get("compositional"):
        types = _union(v.get("per_type") for v in r["compositional"].values())
        cols = [("all", ("all",))] + [(t, ("per_type", t)) for t in types] + [("n", ("n",))]
        out += [("h2", SECTIONS["compositional"]),
                ("p", "Accuracy at scoring the true caption above its edited hard negative, per edit type. An "
                      "attribute or relation swap keeps every word of the caption and changes only what binds to "
                      "what; 50% is chance. BLIP's ITM learns from in-batch hard negatives (the most similar other "
                      "captions), and a random batch almost never holds a swap of the true caption, so the recipe "
                      "by itself does not teach binding; minimal-edit negatives in training (NegCLIP) would."),
                _path_table(r["compositional"], cols)]
    if r.get("heldout"):
        out += [("h2", SECTIONS["heldout"]), ("p", "On color-shape pairs never seen in training."),
                _path_table(r["heldout"], [("compositional", ("compositional",)), ("t2i R@1", ("t2i_r1",))])]
    if r.get("captioning"):
        cols = [("BLEU-4", ("bleu4",)), ("CIDEr", ("cider",)), ("facts true", ("facts_true",)),
                ("objects mentioned", ("objects_mentioned",)), ("n", ("n",))]
        out += [("h2", SECTIONS["captioning"]), ("p", "BLEU-4 (x100) and CIDEr against the reference captions."),
                _path_table(r["captioning"], cols)]
    if r.get("vqa"):
        modes = {f"{m} {mode}": v for m, modes in r["vqa"].items() for mode, v in modes.items()}
        types = _union(v.get("per_type") for v in modes.values())
        cols = [("overall", ("overall",))] + [(t, ("per_type", t)) for t in types] + [("n", ("n",))]
        rows = [[name.replace("blip", "BLIP", 1)] + [fmt(k[-1], lookup(v, *k)) for _, k in cols]
                for name, v in modes.items()]
        out += [("h2", SECTIONS["vqa"]), ("p", "Accuracy per question type; answers generated or ranked."),
                ("table", ["model / mode"] + [h for h, _ in cols], rows)]
    if r.get("cost"):
        models = _paths(r["cost"])
        rows = [[COST_LABELS.get(k, k)] + [fmt(k, lookup(r["cost"], m, k)) for m in models]
                for k in _union(r["cost"].values())]
        out += [("h2", SECTIONS["cost"]), ("p", "Per model, on the machine in the meta line."),
                ("table", ["measure"] + [PATH_NAMES.get(m, m) for m in models], rows)]
    if r.get("capfilt"):
        out += _capfilt_section(r["capfilt"])
    return out


CAPFILT_METRICS = (("t2i R@1", "t2i_r1"), ("zero-shot shape", "zs_shape"), ("zero-shot color", "zs_color"),
                   ("zero-shot count", "zs_count"))


def _capfilt_section(c: dict) -> list:
    """The filter's precision/recall per noise type, and CLIP trained on the noisy, CapFilt and clean corpora."""
    s = c.get("settings", {})
    out = [("h2", SECTIONS["capfilt"]),
           ("p", f"{s.get('n')} web images, one caption each, {fmt('noise', s.get('noise'))} of them noisy (half "
                 "another scene's caption, half one colour or count changed). BLIP writes one synthetic caption per "
                 "image (nucleus sampling, top-p 0.9) and its ITM head keeps a caption at match probability >= "
                 f"{c.get('threshold', 0):.3f} (calibrated on {s.get('calibration_n')} labelled web images of other "
                 f"scenes). Kept: {lookup(c, 'kept', 'original')} original and {lookup(c, 'kept', 'synthetic')} "
                 f"synthetic captions; {c.get('images_without_captions')} images lost every caption.")]
    q = c.get("filter") or {}
    kinds = [k for k, v in q.items() if isinstance(v, dict)]
    if kinds:
        cols = (("precision", "precision"), ("recall", "recall"), ("clean removed", "clean_removed"),
                ("ROC AUC", "roc_auc"), ("n", "n"))
        out += [("p", "Removing noisy original captions, per noise type (each type against the clean captions)."),
                ("table", ["noise"] + [h for h, _ in cols], [[k] + [fmt(key, q[k].get(key)) for _, key in cols]
                                                             for k in kinds])]
    scores = c.get("scores") or {}
    if scores:
        budget = f"{s.get('steps')} steps x {s.get('batch_size')}"
        rows = [[name] + [fmt(key, lookup(scores, name, key)) for _, key in CAPFILT_METRICS] for name in scores]
        rows.append(["gap closed"] + [fmt(key, lookup(c, "gap_closed", key)) for _, key in CAPFILT_METRICS])
        out += [("p", f"A shapes-clip model trained on each corpus ({budget} samples), on the clean test split. "
                      "gap closed = (capfilt - noisy) / (clean - noisy); — where clean beats noisy by less than 2 "
                      "points."),
                ("table", ["corpus"] + [h for h, _ in CAPFILT_METRICS], rows)]
    if c.get("plot_file"):
        out.append(("img", c["plot_file"], "CapFilt scores and ROC/PR", "plot"))
    return out


def _task_groups(r: dict) -> list:
    """(label, [(path, accuracy)]) per task for the accuracy plot; fractions only, straight from results."""
    specs = [(f"zero-shot {k}", "zero_shot", (k,)) for k in KINDS]
    specs += [(f"{d} R@1", "retrieval", (d, "r1")) for d in ("t2i", "i2t")]
    specs += [("compositional", "compositional", ("all",)), ("held-out comp.", "heldout", ("compositional",)),
              ("held-out t2i R@1", "heldout", ("t2i_r1",)), ("caption facts", "captioning", ("facts_true",))]
    groups = [(label, [(p, lookup(r, task, p, *keys)) for p in _paths(r.get(task) or {})])
              for label, task, keys in specs]
    groups += [(f"VQA {mode}", [("blip", lookup(r, "vqa", "blip", mode, "overall"))]) for mode in ("generate", "rank")]
    return _present(groups)


def _edit_groups(r: dict) -> list:
    comp = r.get("compositional") or {}
    types = _union(v.get("per_type") for v in comp.values())
    groups = [(t, [(p, lookup(comp, p, "per_type", t)) for p in _paths(comp)]) for t in types]
    groups.append(("all", [(p, lookup(comp, p, "all")) for p in _paths(comp)]))
    return _present(groups)


def _present(groups: list) -> list:
    """Drops missing bars, then empty groups: a plot shows only what was measured."""
    groups = [(label, [(p, v) for p, v in bars if v is not None]) for label, bars in groups]
    return [g for g in groups if g[1]]


def _bar_plot(path: Path, title: str, groups: list) -> None:
    # The Figure API with the Agg canvas: no pyplot global state, no display needed, safe inside a service.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(groups)), 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(bars) for _, bars in groups)
    seen = set()
    for i, (_, bars) in enumerate(groups):
        for j, (p, v) in enumerate(bars):  # bars packed around the group's center: no gaps for absent paths
            ax.bar(i + (j - (len(bars) - 1) / 2) * width, 100 * v, width, color=COLORS.get(p, "#777777"),
                   label=None if p in seen else PATH_NAMES.get(p, p))
            seen.add(p)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups], rotation=25, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a bar
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plots(r: dict, out_dir: Path) -> dict:
    made = {}
    for name, title, groups in (("plot_tasks", "Accuracy per task", _task_groups(r)),
                                ("plot_compositional", "Compositional probe: accuracy per edit type",
                                 _edit_groups(r))):
        if groups:
            _bar_plot(out_dir / f"{name}.png", title, groups)
            made[name] = out_dir / f"{name}.png"
    return made


def _example_blocks(examples: list) -> list:
    out = [("h2", SECTIONS["examples"])]
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
        out.append(("h3", f"Example {ex.get('id', '')}"))
        out += [("img", ex["image"], str(ex.get("id", "")), "example")] if ex.get("image") else []
        out.append(("table", ["", ""], rows))
    return out


def _target_cell(t: dict) -> str:
    # A target states its own unit: "≥ 90%" or "≥ 15 points" means a fraction, shown as a percentage (points).
    v = t.get("value")
    if not isinstance(v, numbers.Real):
        return fmt("value", v)
    goal = str(t.get("target", ""))
    return fmt("pct", v) if "%" in goal or "point" in goal else f"{v:.4g}"


def _blocks(r: dict, examples: list, plots: dict) -> list:
    m = r["meta"]
    meta = (f"Date: {m.get('date', '?')} · Machine: {m.get('machine', '?')} · Data: {m.get('data', '?')} "
            f"({fmt('n_images', m.get('n_images'))} images) · CLIP: {m.get('clip') or 'none'} · "
            f"BLIP: {m.get('blip') or 'none'}")
    out = [("h1", TITLE), ("p", meta), ("code", m.get("command", "")), ("p", PATHS_NOTE)]
    claims = evaluate_claims(r)
    out += [("h2", SECTIONS["claims"]),
            ("p", "Claims of the seed report (CLIP vs BLIP), each checked by its stated rule on this run's "
                  "numbers; \"not measured\" where this run has none for it."),
            ("table", ["claim", "what we measured", "CLIP", "BLIP", "verdict"],
             [[c["claim"], c["measured"], c["clip"], c["blip"], c["verdict"]] for c in claims])]
    out += _task_sections(r)
    if plots:
        out.append(("h2", SECTIONS["plots"]))
        out += [("img", p.name, name, "plot") for name, p in plots.items()]
    if examples:
        out += _example_blocks(examples)
    if r.get("targets"):
        rows = [[t.get("name", ""), t.get("target", ""), _target_cell(t),
                 {True: "met", False: "missed"}.get(t.get("met"), "not measured")] for t in r["targets"]]
        out += [("h2", SECTIONS["targets"]), ("table", ["target", "goal", "measured", "result"], rows)]
    return out


def _md_text(s) -> str:
    # Backslash-escaped '<' is literal in CommonMark: a caption can never become an HTML tag in a viewer.
    return str(s).replace("\\", "\\\\").replace("<", "\\<").replace("\n", " ")


def _md_row(cells) -> str:
    return "| " + " | ".join(_md_text(c).replace("|", "\\|") for c in cells) + " |"


def to_markdown(blocks: list) -> str:
    parts = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + _md_text(b[1]))
        elif kind == "p":
            parts.append(_md_text(b[1]))
        elif kind == "code":
            parts.append("```\n" + b[1] + "\n```")
        elif kind == "img":
            parts.append(f"![{_md_text(b[2])}]({b[1]})")
        elif kind == "table":
            lines = [_md_row(b[1]), "|" + "---|" * len(b[1])] + [_md_row(row) for row in b[2]]
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}img.plot{max-width:100%}
img.example{width:192px;image-rendering:pixelated;border:1px solid #ccc}"""


def _data_uri(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def to_html(blocks: list, out_dir: Path) -> str:
    e = html.escape
    parts = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{e(str(b[1]))}</{kind}>")
        elif kind == "code":
            parts.append(f"<pre><code>{e(b[1])}</code></pre>")
        elif kind == "img":
            uri = _data_uri(out_dir / b[1])
            parts.append(f'<img class="{b[3]}" alt="{e(b[2])}" src="{uri}">' if uri
                         else f"<p>(image missing: {e(str(b[1]))})</p>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(TITLE)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(results: dict, out_dir, examples: list | None = None) -> dict[str, Path]:
    """Write results.json, report.md, report.html and the plots into out_dir; returns their paths by name.

    `examples` (schema of results["examples"]) defaults to results["examples"]; their images must already be
    written under out_dir. Sections whose results are missing are left out.
    """
    if not isinstance(results.get("meta"), dict):
        raise ValueError("results needs a 'meta' dict (date, machine, data, clip, blip, command, n_images)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    examples = (results.get("examples") or []) if examples is None else examples
    paths = {"json": out_dir / "results.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plots = _plots(results, out_dir)
    blocks = _blocks(results, examples, plots)
    paths["md"].write_text(to_markdown(blocks), encoding="utf-8")
    paths["html"].write_text(to_html(blocks, out_dir), encoding="utf-8")
    return {**paths, **plots}


def _summary_rows(r: dict) -> list:
    """(measure, CLIP, BLIP) rows; where BLIP has several paths, its best one (ITM) is named in the measure."""
    def itm(task):
        return "blip_itm" if lookup(r, task, "blip_itm") is not None else "blip_itc"

    specs = [(f"zero-shot {k}", "zero_shot", "clip", "blip_itc", (k,)) for k in KINDS]
    specs += [(f"retrieval {d} R@1", "retrieval", "clip", itm("retrieval"), (d, "r1")) for d in ("t2i", "i2t")]
    specs += [("compositional", "compositional", "clip", itm("compositional"), ("all",)),
              ("held-out compositional", "heldout", "clip", itm("heldout"), ("compositional",)),
              ("caption BLEU-4 (x100)", "captioning", None, "blip", ("bleu4",)),
              ("caption CIDEr", "captioning", None, "blip", ("cider",)),
              ("VQA generate", "vqa", None, "blip", ("generate", "overall")),
              ("VQA rank", "vqa", None, "blip", ("rank", "overall")),
              ("CapFilt: R@1 gain of a CLIP on its corpus", "capfilt", None, "blip", ("r1_gain",)),
              ("images / s", "cost", "clip", "blip", ("images_per_s",)),
              ("parameters", "cost", "clip", "blip", ("params",))]
    rows = []
    for label, task, clip, blip, keys in specs:
        c, b = lookup(r, task, clip, *keys), lookup(r, task, blip, *keys)
        if c is not None or b is not None:
            name = f"{label} ({PATH_NAMES[blip]})" if blip.startswith("blip_") and b is not None else label
            rows.append((name, fmt(keys[-1], c), fmt(keys[-1], b)))
    return rows


def summary_table(results: dict) -> str:
    """A compact plain-text table for the terminal: a few key numbers per task, CLIP and BLIP side by side."""
    rows = [("measure", "CLIP", "BLIP")] + _summary_rows(results)
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}" for a, b, c in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
