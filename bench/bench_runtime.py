"""Runtime precisions on the CPU (issue 13): clipblip at fp32, bf16 and int8 against transformers at fp32 and bf16,
the same random weights, the same CPU, one process.

    .venv/bin/python bench/bench_runtime.py [--threads 2] [--repeat 3] [--quick] [--only REGEX] [--json OUT]

Cases: CLIP ViT-B/32 image tower (batch 32 and batch 1) and text tower (32 x 77 tokens); BLIP-base captioning of
8 images, greedy and beam 3 (both libraries make exactly 20 new tokens: min_new_tokens = max_new_tokens), ITM of
1 image x 64 texts, VQA generation for 8 images. The transformers ITM peer runs its ViT once and expands the image
states to the 64 texts (its `forward` wants one image per text and would run the ViT 64 times): the same work as ours.
clipblip models come from `clipblip.load(dir, device="cpu", precision=...)` of the directory transformers saved;
transformers bf16 is its fp32 model `.to(torch.bfloat16)`.

Timing: each variant runs once (warm-up; its output is compared with transformers fp32's), once more under the
memory probe, then `--repeat` rounds in which every variant runs once, the order rotating each round so that the
drift of a shared machine hits all alike. A rate is items / median seconds; "+-" is half the range of the rounds'
times, relative to the median time.

Memory: "params" counts every distinct weight and buffer once (int8 Linear weights at 1 byte a value, plus their
float32 bias and scale). "activations" is the rise of the process's peak resident set (VmHWM, reset by writing 5 to
/proc/self/clear_refs) over its resident set just before one call, taken after gc and malloc_trim: all that the
call made resident (activations, KV caches, scratch, weights a kernel repacks per call). Not tracemalloc, which
does not see torch's allocations.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import functools
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

from common import define_torchvision_ops

REF = "transformers fp32"
VARIANTS = (REF, "transformers bf16", "clipblip fp32", "clipblip bf16", "clipblip int8")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Sizes:
    image_batch: int = 32
    text_batch: int = 32
    text_len: int = 77
    caption_batch: int = 8
    new_tokens: int = 20
    itm_texts: int = 64
    vqa_batch: int = 8


QUICK = Sizes(image_batch=4, text_batch=4, caption_batch=2, new_tokens=4, itm_texts=8, vqa_batch=2)
TINY = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2)


@dataclass
class Case:
    key: str
    label: str
    model: str
    items: int
    fns: dict  # variant -> zero-argument callable returning the output
    agree: Callable  # (output, transformers fp32 output) -> str
    results: dict = field(default_factory=dict)


# ---- models ------------------------------------------------------------------------------------------------------
def clip_config(quick: bool):
    from transformers import CLIPConfig

    if not quick:
        return CLIPConfig()  # the defaults are ViT-B/32's shapes
    return CLIPConfig(text_config=TINY, vision_config={**TINY, "image_size": 32, "patch_size": 8}, projection_dim=16)


def blip_config(quick: bool):
    import transformers as T

    if not quick:
        return T.BlipConfig(text_config={"num_attention_heads": 12})  # BLIP-base: ViT-B/16 at 384, BERT-base
    return T.BlipConfig(text_config={**TINY, "encoder_hidden_size": 32},
                        vision_config={**TINY, "image_size": 32, "patch_size": 8}, image_text_hidden_size=16)


def redraw(model: torch.nn.Module) -> torch.nn.Module:
    # transformers initializes BLIP's ViT with std 1e-10, so every image gives the same tokens and the same caption;
    # weights that see the image make the output check against transformers fp32 mean something (CLIP gets the
    # same treatment, for one rule).
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def variants(hf: torch.nn.Module) -> dict:
    """The five variants of one model: transformers fp32/bf16 and clipblip fp32/bf16/int8 of the same weights."""
    import clipblip

    hf = hf.eval()
    out = {REF: hf, "transformers bf16": copy.deepcopy(hf).to(torch.bfloat16)}
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        for p in ("fp32", "bf16", "int8"):
            out[f"clipblip {p}"] = clipblip.load(d, device="cpu", precision=p)
    return out


def param_bytes(model: torch.nn.Module) -> int:
    """Bytes of every distinct weight and buffer; quantized Linear weights (packed, not parameters) included."""
    seen, total = set(), 0
    for m in model.modules():  # yields a module shared by two parents (BLIP's tied decoder) once
        tensors = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        if type(m).__name__ == "LinearPackedParams":
            tensors += [t for t in m._weight_bias() if t is not None]
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


# ---- cases -------------------------------------------------------------------------------------------------------
def features(out) -> torch.Tensor:
    return (out if isinstance(out, torch.Tensor) else out.pooler_output).float()  # transformers 5 wraps them


def agree_features(out, ref) -> str:
    cos = torch.nn.functional.cosine_similarity(features(out), features(ref), dim=-1)
    return f"cos >= {cos.min().item():.5f}"


def agree_tokens(n_new: int):
    def agree(out, ref) -> str:
        ours = out[:, -n_new:] if isinstance(out, torch.Tensor) else torch.tensor(out)
        return f"{(ours == ref[:, -n_new:]).float().mean().item():.0%} tokens"
    return agree


def agree_itm(out, ref) -> str:
    return f"max dp {(out.float().softmax(-1) - ref.float().softmax(-1)).abs().max().item():.4f}"


def by_library(models: dict, theirs, ours) -> dict:
    """variant -> call: `theirs(model)` for the transformers variants, `ours(model)` for clipblip's."""
    return {v: functools.partial(theirs if v.startswith("transformers") else ours, m) for v, m in models.items()}


def clip_cases(models: dict, s: Sizes) -> list[Case]:
    size = models[REF].config.vision_config.image_size
    px = torch.randn(s.image_batch, 3, size, size)
    ids = torch.randint(0, 49406, (s.text_batch, s.text_len))
    ids[:, 0], ids[:, -1] = 49406, 49407  # [SOT] ... [EOT]: both pool at the EOT

    def image(x):
        return by_library(models, lambda m: m.get_image_features(pixel_values=x), lambda m: m.encode_image(x))

    text = by_library(models, lambda m: m.get_text_features(input_ids=ids), lambda m: m.encode_text(ids))
    return [Case("clip-image-32", f"CLIP image tower, batch {s.image_batch}", "CLIP", s.image_batch, image(px),
                 agree_features),
            Case("clip-image-1", "CLIP image tower, batch 1", "CLIP", 1, image(px[:1]), agree_features),
            Case("clip-text", f"CLIP text tower, {s.text_batch} x {s.text_len} tokens", "CLIP", s.text_batch, text,
                 agree_features)]


def caption_cases(models: dict, s: Sizes) -> list[Case]:
    from clipblip.generate import GenerationConfig
    from clipblip.tasks.caption import caption_ids

    size = models[REF].config.vision_config.image_size
    px = torch.randn(s.caption_batch, 3, size, size)
    t = models["clipblip fp32"].config.text
    start = torch.tensor([[t.dec_id]])
    gen = dict(max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens)
    cases = []
    for beams in (1, 3):
        cfg = GenerationConfig(num_beams=beams, eos_id=t.sep_id, pad_id=t.pad_id, **gen)
        fns = by_library(models, lambda m, b=beams: m.generate(pixel_values=px, num_beams=b, **gen),
                         lambda m, c=cfg: caption_ids(m, px, start, c))
        name = "greedy" if beams == 1 else f"beam {beams}"
        cases.append(Case(f"caption-{name.replace(' ', '')}", f"BLIP caption, batch {s.caption_batch}, {name}",
                          "BLIP caption", s.caption_batch, fns, agree_tokens(s.new_tokens)))
    return cases


def itm_cases(models: dict, s: Sizes) -> list[Case]:
    size = models[REF].config.vision_config.image_size
    px = torch.randn(1, 3, size, size)
    texts = [f"a photo of {i} red circles next to a blue square" for i in range(s.itm_texts)]
    ids = models["clipblip fp32"].tokenize(texts)  # [CLS] first: what transformers' ITM path starts with
    mask = (ids != models["clipblip fp32"].config.text.pad_id).long()

    def theirs(m):
        states = m.vision_model(pixel_values=px).last_hidden_state.expand(len(texts), -1, -1)
        h = m.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=states,
                           encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long)).last_hidden_state
        return m.itm_head(h[:, 0])

    def ours(m):
        return m.itm_logits(ids, m.image_kv(m.image_tokens(px)))

    return [Case("itm", f"BLIP ITM, 1 image x {s.itm_texts} texts", "BLIP ITM", s.itm_texts,
                 by_library(models, theirs, ours), agree_itm)]


def vqa_cases(models: dict, s: Sizes) -> list[Case]:
    from clipblip.generate import GenerationConfig, generate

    size = models[REF].config.vision_config.image_size
    px = torch.randn(s.vqa_batch, 3, size, size)
    ids = models["clipblip fp32"].tokenize(["what color is the circle on the left?"] * s.vqa_batch)
    t = models["clipblip fp32"].config.text
    gen = dict(max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens)
    cfg = GenerationConfig(eos_id=t.sep_id, pad_id=t.pad_id, **gen)
    start = torch.full((s.vqa_batch, 1), t.dec_id)

    def ours(m):
        states = m.encode_question(ids, m.image_kv(m.image_tokens(px)))
        return generate(m.decoder(states, ids != t.pad_id), start, cfg)

    fns = by_library(models, lambda m: m.generate(input_ids=ids, pixel_values=px, **gen), ours)
    return [Case("vqa", f"BLIP VQA generate, batch {s.vqa_batch}, greedy", "BLIP VQA", s.vqa_batch, fns,
                 agree_tokens(s.new_tokens))]


GROUPS = {  # model -> (transformers class name, config, case builder, case keys)
    "CLIP": ("CLIPModel", clip_config, clip_cases, ("clip-image-32", "clip-image-1", "clip-text")),
    "BLIP caption": ("BlipForConditionalGeneration", blip_config, caption_cases, ("caption-greedy", "caption-beam3")),
    "BLIP ITM": ("BlipForImageTextRetrieval", blip_config, itm_cases, ("itm",)),
    "BLIP VQA": ("BlipForQuestionAnswering", blip_config, vqa_cases, ("vqa",)),
}


# ---- measuring ---------------------------------------------------------------------------------------------------
def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def activation_peak(fn) -> int | None:
    """Bytes the call raised the peak resident set above the resident set before it; None where Linux's peak
    reset (/proc/self/clear_refs) is not available."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, or the call would reuse it unseen
        base = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, KeyError):
        return None
    fn()
    return (_status_kb("VmHWM") - base) * 1024


def measure(case: Case, repeat: int) -> None:
    res = case.results = {v: {} for v in case.fns}
    ref = None
    for v, fn in case.fns.items():  # transformers fp32 first: the reference output
        try:
            out = fn()
        except Exception:
            res[v]["error"] = traceback.format_exc()
            print(f"  {case.key} / {v}: FAILED\n{res[v]['error']}", flush=True)
            continue
        if v == REF:
            ref = out
        res[v]["agreement"] = case.agree(out, ref) if ref is not None else None
    live = [v for v in case.fns if "error" not in res[v]]
    for v in live:
        res[v]["activation_bytes"] = activation_peak(case.fns[v])
    times = {v: [] for v in live}
    for r in range(repeat):
        for v in live[r % len(live):] + live[:r % len(live)]:
            t0 = time.perf_counter()
            case.fns[v]()
            times[v].append(time.perf_counter() - t0)
    for v in live:
        median = statistics.median(times[v])
        res[v].update(seconds=times[v], rate=case.items / median, spread=(max(times[v]) - min(times[v])) / 2 / median)
    print(f"  {case.label}: " + ", ".join(f"{v} {res[v]['rate']:.2f}/s" for v in live), flush=True)


# ---- verdicts ----------------------------------------------------------------------------------------------------
def rate(case: Case, v: str) -> float | None:
    return case.results.get(v, {}).get("rate")


def ratio(case: Case, a: str, b: str) -> float | None:
    ra, rb = rate(case, a), rate(case, b)
    return ra / rb if ra and rb else None


def goals(case: Case, cpu: dict) -> list[dict]:
    """The issue's goals that concern this case, each met / missed / not this CPU's / no data."""
    def goal(tag, text, value, need, applies=True):
        verdict = ("no data" if value is None else "not this CPU" if not applies
                   else "met" if value >= need else "missed")
        return dict(tag=tag, goal=text, value=value, need=need, applies=applies, verdict=verdict)

    out = [goal(f"{p} =", f"{p}: clipblip >= transformers", ratio(case, f"clipblip {p}", f"transformers {p}"), 1.0)
           for p in ("fp32", "bf16")]
    need = {"clip-image-32": 4.0, "caption-greedy": 3.0, "caption-beam3": 3.0}.get(case.key)
    if need:
        best = max((ratio(case, f"clipblip {p}", REF) or 0.0 for p in ("fp32", "bf16", "int8")))
        out.append(goal(f"best {need:g}x", f"native bf16 CPU: best precision >= {need:g}x transformers fp32",
                        best or None, need, cpu["native_bf16"]))
        # "int8 >= 1.5x fp32" does not say whose fp32: both readings are judged
        for peer in ("transformers", "clipblip"):
            out.append(goal(f"int8 1.5x {peer[:2]}", f"AVX2-only CPU: int8 >= 1.5x {peer} fp32",
                            ratio(case, "clipblip int8", f"{peer} fp32"), 1.5, cpu["avx2_only"]))
    return out


def cpu_info() -> dict:
    from clipblip.runtime import cpu_flags, cpu_native_bf16

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        model = platform.processor() or platform.machine()
    flags = cpu_flags()
    return dict(model=model, cores=os.cpu_count(), flags={f: f in flags for f in FLAGS},
                native_bf16=cpu_native_bf16(), avx2_only="avx2" in flags and "avx512f" not in flags)


# ---- report ------------------------------------------------------------------------------------------------------
def fmt(x, spec="{:.2f}", none="-") -> str:
    return none if x is None else spec.format(x)


def _head() -> list[str]:
    return ["| case | " + " | ".join(VARIANTS) + " |", "|---|" + "---:|" * len(VARIANTS)]


def rate_table(cases: list[Case]) -> list[str]:
    rows = ["## Throughput (items/s, median; +- half the range of the rounds' times)", *_head()]
    for c in cases:
        cells = [fmt(rate(c, v), "{:.2f}", "FAILED" if "error" in c.results.get(v, {}) else "-")
                 + (f" +-{c.results[v]['spread']:.0%}" if rate(c, v) else "") for v in VARIANTS]
        rows.append(f"| {c.label} | " + " | ".join(cells) + " |")
    return rows


def ratio_table(cases: list[Case], cpu: dict) -> list[str]:
    rows = ["## Ratios (> 1: clipblip faster)", "| case | fp32 ours/HF | bf16 ours/HF | ours fp32 / HF fp32 | "
            "ours bf16 / HF fp32 | ours int8 / HF fp32 | int8 / ours fp32 | goals |", "|---|" + "---:|" * 6 + "---|"]
    for c in cases:
        r = [ratio(c, "clipblip fp32", REF), ratio(c, "clipblip bf16", "transformers bf16")]
        r += [ratio(c, f"clipblip {p}", REF) for p in ("fp32", "bf16", "int8")]
        r += [ratio(c, "clipblip int8", "clipblip fp32")]
        verdicts = ", ".join(f"{g['tag']} {g['verdict']}" for g in goals(c, cpu))
        rows.append(f"| {c.label} | " + " | ".join(fmt(x, "{:.2f}x") for x in r) + f" | {verdicts} |")
    return rows


def memory_table(cases: list[Case], params: dict) -> list[str]:
    rows = ["## Memory (MB: params once per model; activations: rise of peak RSS during one call)", *_head()]
    for model, by_variant in params.items():
        rows.append(f"| **{model}** params | " + " | ".join(fmt(by_variant.get(v), "{:.0f}") for v in VARIANTS)
                    + " |")
        for c in (c for c in cases if c.model == model):
            mb = [c.results.get(v, {}).get("activation_bytes") for v in VARIANTS]
            rows.append(f"| {c.label} activations | " + " | ".join(fmt(b and b / 2**20, "{:.0f}") for b in mb) + " |")
    return rows


def goal_lines(cases: list[Case], cpu: dict, quick: bool) -> list[str]:
    rows = ["## Goals of issue 13" + (" (--quick: tiny models, so the verdicts mean nothing)" if quick else "")]
    for c in cases:
        for g in goals(c, cpu):
            rows.append(f"- {c.label}: {g['goal']}: {fmt(g['value'], '{:.2f}x')} (need {g['need']:g}x): "
                        f"**{g['verdict']}**")
    return rows


def report(cases: list[Case], params: dict, cpu: dict, quick: bool) -> str:
    agreement = ["## Output against transformers fp32 (same inputs)", *_head()]
    agreement += [f"| {c.label} | " + " | ".join(c.results.get(v, {}).get("agreement") or "-" for v in VARIANTS)
                  + " |" for c in cases]
    parts = (rate_table(cases), ratio_table(cases, cpu), memory_table(cases, params), agreement,
             goal_lines(cases, cpu, quick))
    return "\n\n".join("\n".join(p) for p in parts)


def machine(threads: int, cpu: dict) -> dict:
    import transformers

    return dict(cpu=cpu["model"], cores=cpu["cores"], flags=cpu["flags"], native_bf16=cpu["native_bf16"],
                avx2_only=cpu["avx2_only"], torch=torch.__version__, transformers=transformers.__version__,
                python=platform.python_version(), threads=threads, load_average=os.getloadavg(),
                date=datetime.datetime.now().isoformat(timespec="seconds"))


def run_group(name: str, quick: bool, sizes: Sizes, keep, repeat: int, params: dict) -> list[Case]:
    import transformers as T

    cls, config, build, _ = GROUPS[name]
    torch.manual_seed(0)
    models = variants(redraw(getattr(T, cls)(config(quick))))
    params[name] = {v: param_bytes(m) / 2**20 for v, m in models.items()}
    cases = [c for c in build(models, sizes) if keep(c)]
    print(f"# {name}", flush=True)
    with torch.inference_mode():
        for case in cases:
            measure(case, repeat)
            case.fns = {}  # the closures hold the models: let them go before the next group is built
    del models
    gc.collect()
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per case (the median is reported)")
    ap.add_argument("--quick", action="store_true", help="tiny models and sizes: a smoke run of every case")
    ap.add_argument("--only", default="", help="regex on case keys and labels, e.g. 'clip|itm'")
    ap.add_argument("--json", default="", help="write every figure and the machine here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    define_torchvision_ops()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    t0, cpu = time.perf_counter(), cpu_info()
    info = machine(args.threads, cpu)
    print("# " + ", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    pattern = re.compile(args.only, re.I)
    keep = lambda c: any(pattern.search(x) for x in (c.key, c.label, c.model))  # noqa: E731
    sizes, cases, params = (QUICK if args.quick else Sizes()), [], {}
    for name, (*_, keys) in GROUPS.items():
        if any(pattern.search(k) for k in keys) or pattern.search(name):
            cases += run_group(name, args.quick, sizes, keep, args.repeat, params)
    info.update(load_average_end=os.getloadavg(), wall_seconds=round(time.perf_counter() - t0))
    print(f"# load average at the end: {info['load_average_end']}, {info['wall_seconds']} s in all")
    print("\n" + report(cases, params, cpu, args.quick))
    failed = [(c, v) for c in cases for v in VARIANTS if "error" in c.results.get(v, {})]
    for c, v in failed:
        print(f"\nFAILED: {c.label} / {v}\n{c.results[v]['error']}")
    if args.json:
        out = dict(machine=info, quick=args.quick, repeat=args.repeat, params_mb=params,
                   cases=[dict(key=c.key, label=c.label, model=c.model, items=c.items, results=c.results,
                               goals=goals(c, cpu)) for c in cases])
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
