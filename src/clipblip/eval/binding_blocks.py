"""The report's binding section (`compare --binding`), built from the results dict of experiments/binding.py.

Every number shown is one found in the results: probe accuracy per arm, path and edit type with its interval, what
each arm costs on retrieval and zero-shot, the paired tests with their Holm-corrected p-values and verdicts, and
the answer to the section's question.
"""

from __future__ import annotations

from .blocks import Block, Heading, Paragraph, Table
from .claims import fmt_ci

TITLE = "Binding: do minimal-edit negatives teach fusion to bind?"
TYPES = (("attribute swap", "attribute_swap"), ("relation swap", "relation_swap"), ("count", "count_change"),
         ("colour", "color_change"))
PATHS = {"clip": "CLIP", "blip_itm": "BLIP ITM", "blip_itc": "BLIP ITC"}
SPLIT_NAMES = {"test": "test split", "test_heldout": "held-out colour-shape pairs (test_heldout)"}
QUESTION = ("With the same negatives, does fusion (BLIP's ITM) bind better than contrastive embeddings (CLIP), and "
            "by how much?")


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _with_ci(x, ci) -> str:
    """"52.0% (48.7%–55.3%)", as the rest of the report writes a rate with its interval."""
    return pct(x) if x is None else fmt_ci("acc", x, ci)


def _diff(t: dict) -> str:
    """b - a in points with its paired bootstrap interval, "+0.8% (-3.9%–+5.3%)"."""
    return fmt_ci("diff", t["diff"], t["diff_ci"])


def _share(s: dict) -> str:
    return _with_ci(s["acc"], s["ci"])


def _seconds(s) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"


def _p(p) -> str:
    return "-" if p is None else ("< 0.0001" if p < 1e-4 else f"{p:.4f}")


def _setup(r: dict) -> list[Block]:
    s, m = r["settings"], r["machine"]
    budget = (f"Budget: {s['steps']} steps of {s['batch_size']} per arm ({s['steps'] * s['batch_size']:,} samples), "
              f"lr {s['lr']}, warmup {s['warmup']}, ITC queue {s['queue_size']}, seed {s['seed']}, on {s['device']}; "
              f"the probe on {s['eval_n']} scenes per split, R@1 and zero-shot on {s['retrieval_n']}.")
    machine = (f"Run {r['date']} on {m.get('cpu') or m['platform']} ({m['torch_threads']} torch thread(s) of "
               f"{m['cpus']} CPUs, load average {m.get('load_average')}), torch {m['torch']}; wall time "
               f"{_seconds(r['wall_s'])} for this call (arms done before are read back, their times below).")
    rows = [[name, a["label"], a["objective"] or "-", f"{a['steps']} x {s['batch_size']}" if a["steps"] else "-",
             _seconds(a["train_s"]), _seconds(a["eval_s"])] for name, a in r["arms"].items()]
    return [Paragraph(budget), Paragraph(machine),
            Table(["arm", "what", "objective", "steps x batch", "training", "evaluation"], rows)]


def _probe(r: dict, split: str) -> list[Block]:
    rows = []
    for name, arm in r["arms"].items():
        for path, s in arm["probe"][split].items():
            rows.append([name, PATHS.get(path, path)] + [_share(s["per_type"][t]) for _, t in TYPES]
                        + [_share(s["all"]), str(s["all"]["n"])])
    return [Heading(f"Probe on the {SPLIT_NAMES.get(split, split)}", 3),
            Table(["arm", "path"] + [h for h, _ in TYPES] + ["all", "pairs"], rows)]


def _costs(r: dict) -> list[Block]:
    rows = []
    for name, arm in r["arms"].items():
        for path, rec in arm["retrieval"].items():
            zs = arm["zero_shot"].get(path, {})
            rows.append([name, PATHS.get(path, path), _with_ci(rec["t2i_r1"], rec["ci"])]
                        + [_share(zs[k]) if k in zs else "-" for k in ("shape", "color", "count")])
    return [Heading("What each arm costs on retrieval and zero-shot", 3),
            Paragraph("Text-to-image R@1 over every caption of the test scenes (interval: bootstrap over images; "
                      "BLIP ITM reranks the ITC top 16) and zero-shot accuracy in the joint space (Wilson)."),
            Table(["arm", "path", "t2i R@1", "zero-shot shape", "zero-shot colour", "zero-shot count"], rows)]


def _tests(r: dict) -> list[Block]:
    names = dict(TYPES)
    rows = [[t["name"], t["split"], next(h for h, k in names.items() if k == t["type"]), pct(t["a_acc"]),
             pct(t["b_acc"]), _diff(t),
             _p(t["p"]), _p(t["p_holm"]), t["verdict"]] for t in r["tests"]]
    return [Heading("Paired tests", 3),
            Paragraph(f"Exact McNemar on the same caption-negative pairs; the hypothesis is that b binds better "
                      f"than a; difference b - a in points with a paired bootstrap interval; p Holm-corrected over "
                      f"the section's {len(rows)} tests. Pairs of one image are not independent, so the intervals "
                      f"and p-values are somewhat optimistic."),
            Table(["test", "split", "edit type", "a", "b", "b - a", "p", "p (Holm)", "verdict"], rows)]


def _answer(r: dict) -> list[Block]:
    lines = []
    for t in r["question"]:
        if t["type"] == "attribute_swap":
            lines.append(f"On attribute swaps ({SPLIT_NAMES.get(t['split'], t['split'])}), BLIP ITM with minimal-edit "
                         f"negatives (D) scores {pct(t['b_acc'])} and CLIP with the same negatives (B) "
                         f"{pct(t['a_acc'])}: {_diff(t)}, p (Holm) = {_p(t['p_holm'])}: "
                         f"{t['verdict']}.")
    g = r["goal"]
    lines.append(f"Goal (BLIP ITM >= {pct(g['target'])} on attribute swaps with minimal-edit negatives, test split): "
                 f"{'reached' if g['met'] else 'not reached'} at this budget, "
                 f"{_with_ci(g['attribute_swap'], g['ci'])}.")
    return [Heading("The answer", 3), Paragraph(QUESTION), *[Paragraph(line) for line in lines]]


def section(results: dict | None) -> list[Block]:
    """The section's blocks; none without results."""
    if not results:
        return []
    intro = ("The shipped CLIP and BLIP score near chance on attribute swaps; the hypothesis is that neither recipe "
             "ever shows the model a swap of the true caption. Each arm fine-tunes a shipped model with the same "
             "steps, samples and seed: A CLIP's recipe, B CLIP with one minimal edit of each caption as an extra "
             "negative text (NegCLIP), C BLIP's retrieval recipe (ITC + ITM with in-batch hard negatives), D BLIP "
             "with the same edits among ITM's no-match pairs and ITC's negatives, E BLIP with ITM negatives mined "
             "from a queue of recent texts. Rates are with 95% Wilson intervals.")
    blocks = [Heading(TITLE), Paragraph(intro), *_setup(results)]
    for split in ("test", "test_heldout"):
        blocks += _probe(results, split)
    return blocks + _costs(results) + _tests(results) + _answer(results)
