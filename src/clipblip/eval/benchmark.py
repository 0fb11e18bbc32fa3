"""Run the comparison: every section the given models and data allow, with progress, into one results dict;
plus the cost of each family on this machine, the issue's targets and a few examples for the report."""

from __future__ import annotations

import datetime
import platform
from contextlib import closing
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.shapes import ANSWERS
from ..data.shapes_eval import records
from ..errors import ClipBlipError
from ..jobs import available_cpus, ordered_map
from . import compare as C
from . import uncertainty
from .claims import interval, lookup, paired_measures, test_key
from .cost import measure

TARGETS = (  # (name, target text, how to read the value from results, threshold)
    ("CLIP zero-shot colour", ">= 95%", ("zero_shot", "clip", "color"), 0.95),
    ("CLIP zero-shot shape", ">= 95%", ("zero_shot", "clip", "shape"), 0.95),
    ("BLIP ITM on attribute swaps", ">= 90%", ("compositional", "blip_itm", "per_type", "attribute_swap"), 0.90),
    ("VQA overall (generated answers)", ">= 85%", ("vqa", "blip", "generate", "overall"), 0.85),
    ("caption facts true", ">= 90%", ("captioning", "blip", "facts_true"), 0.90),
)


def _target(name: str, target: str, value, threshold: float, ci=None) -> dict:
    return {"name": name, "target": target, "value": value, "ci": ci,
            "met": None if value is None else bool(value >= threshold)}


def targets(results: dict) -> list[dict]:
    out = [_target(n, t, lookup(results, *p), th, interval(results, p)) for n, t, p, th in TARGETS]
    clip = lookup(results, "compositional", "clip", "per_type", "attribute_swap")
    itm = lookup(results, "compositional", "blip_itm", "per_type", "attribute_swap")
    gap = None if clip is None or itm is None else itm - clip
    out.append(_target("BLIP ITM minus CLIP on attribute swaps", ">= 15 points", gap, 0.15))
    return out


def cost(model, recs: list[dict], blip: bool) -> dict:
    """The cost model (eval/cost.py) on up to 64 test images and their captions."""
    images, texts = [r["image"] for r in recs[:64]], [c for r in recs[:64] for c in r["captions"]][:256]
    return measure(model, images, texts, itm=blip)


def paired_tests(items: dict) -> dict:
    """The paired test of every CLIP-vs-BLIP pair of numbers the claims compare, from the sections' items."""
    tests = {}
    for cp, bp in paired_measures():
        a, b = items.get(cp[:2]), items.get(bp[:2])
        if a is not None and b is not None and cp[2:] == bp[2:]:
            test = uncertainty.paired(cp[0], cp[2:], a, b)
            if test is not None:
                tests[test_key(cp, bp)] = test
    return tests


def _shapes(n: int, seed: int) -> dict:
    return {"test": records("test", n, seed), "single": records("test", n, seed, n_objects=1),
            "heldout": records("test_heldout", n, seed)}


def _steps(clip, blip, blip_vqa, data) -> list:
    """(results path, function) for every section these models allow."""
    steps = []
    for name, model in (("clip", clip), ("blip_itc", blip)):
        if model is None:
            continue
        steps += [(("zero_shot", name), lambda m=model: C.zero_shot(m, data["single"], data["test"])),
                  (("retrieval", name), lambda m=model: C.retrieval(m, data["test"])),
                  (("compositional", name), lambda m=model: C.compositional(m, data["test"])),
                  (("heldout", name), lambda m=model: C.heldout(m, data["heldout"]))]
    if blip is not None:
        steps += [(("retrieval", "blip_itm"), lambda: C.retrieval_itm(blip, data["test"])),
                  (("compositional", "blip_itm"), lambda: C.compositional_itm(blip, data["test"])),
                  (("heldout", "blip_itm"), lambda: C.heldout(blip, data["heldout"], itm=True)),
                  (("captioning", "blip"), lambda: C.captioning(blip, data["test"]))]
    if blip_vqa is not None:
        half = data["test"][: max(1, len(data["test"]) // 2)]
        steps.append((("vqa", "blip"), lambda: C.vqa(blip_vqa, C.shapes_questions(half), list(ANSWERS))))
    for name, model in (("clip", clip), ("blip", blip)):
        if model is not None:
            steps.append((("cost", name), lambda m=model, b=name == "blip": cost(m, data["test"], b)))
    return steps


def _decoded(rec: dict):
    """(the record, it decoded or None, the reject's reason); runs in a decoding thread, the caller logs it."""
    from ..data.readers import decode
    from ..data.rejects import Rejects

    return rec, decode(rec, why := Rejects()), why.items[0][1] if why.items else None


def _files(source: str, n: int, split=None, image_root=None, workers=None) -> dict:
    """Up to n decodable records of a dataset file (COCO Karpathy, CSV, JSONL, VQA...), decoded by `workers`
    threads (see tasks.inputs.ordered_map), at most 32 ahead of the n-th; bad images skipped."""
    from ..data.readers import open_dataset
    from ..data.rejects import Rejects

    ds, rejects, recs = open_dataset(source, split=split, image_root=image_root), Rejects(), []
    with closing(ordered_map(_decoded, (ds[i] for i in range(len(ds))), workers, 32)) as decoded:
        for r, rec, why in decoded:
            if len(recs) == n:
                break
            if rec is None:
                rejects.add(r.get("id"), why, image=r.get("image"))
            elif "caption" in rec and not rec.get("captions"):  # every section reads a "captions" list
                recs.append({**rec, "captions": [rec["caption"]]})
            else:
                recs.append(rec)
    if not recs:
        raise ClipBlipError(f"{source}: no readable image among its records ({rejects.summary()})")
    return {"test": recs}


def _file_steps(clip, blip, blip_vqa, data) -> list:
    """Caption data: retrieval and captioning; VQA data: VQA. What needs Shapes' labels is left out."""
    recs = data["test"]
    if "question" in recs[0]:
        model = blip_vqa or blip
        return [] if model is None else [(("vqa", "blip"), lambda: C.vqa(model, recs))]
    steps = [(("retrieval", name), lambda m=m: C.retrieval(m, recs))
             for name, m in (("clip", clip), ("blip_itc", blip)) if m is not None]
    if blip is not None:
        steps += [(("retrieval", "blip_itm"), lambda: C.retrieval_itm(blip, recs)),
                  (("captioning", "blip"), lambda: C.captioning(blip, recs))]
    return steps


def _runtime(*models) -> str:
    """Where the models ran, e.g. "cpu at bf16" (all of them, as `clipblip compare` loads them alike)."""
    return ", ".join(sorted({f"{m.device} at {m.precision}" for m in models if m is not None}))


def _threads() -> str:
    """The torch threads the measurements ran on and the CPUs there were, e.g. "1 thread of 2 CPUs"."""
    threads, cpus = torch.get_num_threads(), available_cpus()
    return f"{threads} thread{'s' * (threads != 1)} of {cpus} CPU{'s' * (cpus != 1)}"


@torch.no_grad()
def run(clip=None, blip=None, blip_vqa=None, *, data: str = "shapes", n: int = 300, seed: int = 0,
        split=None, image_root=None, sources: dict | None = None, command: str = "",
        progress: bool = True, workers: int | None = None) -> tuple[dict, dict]:
    """(results, extras): results as report.py reads them; extras holds per-item outputs for the examples.
    `data`: "shapes" (the generated test splits) or a dataset file that clipblip.data reads, its images decoded
    by `workers` threads (None: tasks.inputs.default_workers(); 0: in the calling thread)."""
    records = _shapes(n, seed) if data == "shapes" else _files(data, n, split, image_root, workers)
    steps = (_steps if data == "shapes" else _file_steps)(clip, blip, blip_vqa, records)
    results: dict = {}
    extras: dict = {"data": records}
    items = extras["items"] = {}
    for path, fn in tqdm(steps, desc="compare", unit="section", disable=not progress):
        value = fn()
        if "items" in value:  # per-item outcomes: for the paired tests, not for results.json
            items[path] = value.pop("items")
        if path[0] in ("captioning", "vqa"):  # per-item outputs go to the examples, not results.json
            extras[path[0]] = value.pop("captions" if path[0] == "captioning" else "answers")
        results.setdefault(path[0], {})[path[1]] = value
    sources = sources or {}
    described = (f"Shapes test split (seed {seed}; {n} scenes, {n} single-object scenes, {n} held-out-pair "
                 "scenes)" if data == "shapes" else f"{data} ({len(records['test'])} records)")
    results["meta"] = {"date": datetime.date.today().isoformat(), "command": command,
                       "n_images": len(records["test"]), "data": described,
                       "machine": f"{platform.machine()}, {_threads()}, torch {torch.__version__}; models on "
                                  f"{_runtime(clip, blip, blip_vqa)}",
                       "clip": sources.get("clip"), "blip": sources.get("blip")}
    results["tests"] = paired_tests(items)
    results["targets"] = targets(results)
    return results, extras


def examples(extras: dict, out: Path, k: int = 4) -> list[dict]:
    """The first k test scenes: image (written under out/examples), truth, BLIP's caption and answers."""
    (out / "examples").mkdir(parents=True, exist_ok=True)
    recs = extras["data"]["test"][:k]
    answers = iter(extras.get("vqa", []))
    rows = []
    for i, r in enumerate(recs):
        rel = f"examples/example-{i}.png"
        r["image"].resize((128, 128)).save(out / rel)
        qa = [{"question": q["question"], "truth": q["answer"], "answer": next(answers, None)}
              for q in r.get("vqa", [])]
        rows.append({"id": r["id"], "image": rel, "truth": r.get("caption") or r.get("question"),
                     "caption": extras["captioning"][i] if "captioning" in extras else None,
                     "vqa": qa[:3] if "vqa" in extras else [], "retrieval": None})
    return rows
