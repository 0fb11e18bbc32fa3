"""The report's bar plots: accuracy per task and per compositional edit type, one bar per model path.

Drawn with the Figure API on the Agg canvas: no pyplot global state, no display needed, safe inside a service.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..files import write_atomic
from .blocks import PATH_NAMES, model_paths, union
from .claims import KINDS, lookup

COLORS = {"clip": "#4c72b0", "blip_itc": "#dd8452", "blip_itm": "#c44e52", "blip": "#8172b3"}


def _present(groups: list) -> list:
    """Drops missing bars, then empty groups: a plot shows only what was measured."""
    groups = [(label, [bar for bar in bars if bar[1] is not None]) for label, bars in groups]
    return [g for g in groups if g[1]]


def _task_groups(r: dict) -> list:
    """(label, [(path, accuracy, its interval)]) per task for the accuracy plot; fractions only, from results."""
    specs = [(f"zero-shot {k}", "zero_shot", (k,)) for k in KINDS]
    specs += [(f"{d} R@1", "retrieval", (d, "r1")) for d in ("t2i", "i2t")]
    specs += [("compositional", "compositional", ("all",)), ("held-out comp.", "heldout", ("compositional",)),
              ("held-out t2i R@1", "heldout", ("t2i_r1",)), ("caption facts", "captioning", ("facts_true",))]
    groups = [(label, [(p, lookup(r, task, p, *keys), lookup(r, task, p, "ci", *keys))
                       for p in model_paths(r.get(task) or {})]) for label, task, keys in specs]
    groups += [(f"VQA {mode}", [("blip", lookup(r, "vqa", "blip", mode, "overall"),
                                 lookup(r, "vqa", "blip", mode, "ci", "overall"))]) for mode in ("generate", "rank")]
    return _present(groups)


def _edit_groups(r: dict) -> list:
    """(edit type, [(path, accuracy, its interval)]) per edit type of the probe, then all edits together."""
    comp = r.get("compositional") or {}
    types = union(v.get("per_type") for v in comp.values())
    groups = [(t, [(p, lookup(comp, p, "per_type", t), lookup(comp, p, "ci", "per_type", t))
                   for p in model_paths(comp)]) for t in types]
    groups.append(("all", [(p, lookup(comp, p, "all"), lookup(comp, p, "ci", "all")) for p in model_paths(comp)]))
    return _present(groups)


def _bar_plot(path: Path, title: str, groups: list) -> None:
    """Grouped bars of accuracies (fractions, drawn as %) with their 95% intervals as error bars, written as a PNG
    to `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(groups)), 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(bars) for _, bars in groups)
    seen = set()
    for i, (_, bars) in enumerate(groups):
        for j, (p, v, ci) in enumerate(bars):  # bars packed around the group's center: no gaps for absent paths
            # a percentile interval may stop short of its point estimate: the bar then ends at the value
            err = [[100 * max(v - ci[0], 0)], [100 * max(ci[1] - v, 0)]] if isinstance(ci, (list, tuple)) else None
            ax.bar(i + (j - (len(bars) - 1) / 2) * width, 100 * v, width, color=COLORS.get(p, "#777777"),
                   label=None if p in seen else PATH_NAMES.get(p, p), yerr=err, capsize=2)
            seen.add(p)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups], rotation=25, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a bar
    fig.tight_layout()
    png = io.BytesIO()  # drawn in memory, then written atomically: a report never links half a PNG
    fig.savefig(png, format="png", dpi=100)
    write_atomic(path, png.getvalue())


def write_plots(r: dict, out_dir: Path) -> dict[str, Path]:
    """The plots `r` has numbers for, written into out_dir; their files by name ("plot_tasks", ...)."""
    made = {}
    for name, title, groups in (("plot_tasks", "Accuracy per task", _task_groups(r)),
                                ("plot_compositional", "Compositional probe: accuracy per edit type",
                                 _edit_groups(r))):
        if groups:
            _bar_plot(out_dir / f"{name}.png", title, groups)
            made[name] = out_dir / f"{name}.png"
    return made
