"""The report of `clipblip compare`: the seed report's CLIP-vs-BLIP claims checked against measured numbers.

`write_report(results, out_dir)` writes results.json, report.md, a self-contained report.html and two PNG plots;
`summary_table(results)` is the CLI's terminal view. The report shows only numbers found in `results` (a claim
without its numbers says "not measured"), so results.json is the whole evidence behind it. The parts: the claims
and their rules (claims.py), the sections as blocks (blocks.py), the plots (plots.py), markdown and HTML
(render.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic
from .binding_blocks import section as binding_section
from .blocks import PATH_NAMES, report_blocks
from .claims import KINDS, evaluate_claims, fmt, lookup
from .plots import write_plots
from .render import to_html, to_markdown


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
    write_atomic(paths["json"], json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    plots = write_plots(results, out_dir)
    blocks = report_blocks(results, examples, plots, binding_section(results.get("binding")))
    write_atomic(paths["md"], to_markdown(blocks))
    write_atomic(paths["html"], to_html(blocks, out_dir))
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
              ("time per image", "cost", "clip", "blip", ("encode_image",)),
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


def verdict_lines(results: dict) -> str:
    """The claims' verdicts for the terminal, one line each ("CLIP is the choice for ...: supported")."""
    return "\n".join(f"  {c['claim']}: {c['verdict']}" for c in evaluate_claims(results)
                     if c["verdict"] != "not measured")
