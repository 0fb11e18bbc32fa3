"""GPU inference benchmark of issue 13: clipblip against transformers, bf16, same random weights, one GPU.

    python3 scripts/gpu_runtime.py --out runs/gpu_runtime.json                # one H100/H200: about 3-5 min
    python3 scripts/gpu_runtime.py --tiny --device cpu --out /tmp/rt.json     # tiny configs on the CPU (CI, seconds)

Cases and the issue's goals (clipblip's rate):
  clip-b16-image      CLIP ViT-B/16 image tower at 224 px, batch 256              >= 14,000 images/s
  clip-l14-image      CLIP ViT-L/14 image tower at 224 px, batch 256              >= 3,000 images/s
  clip-text           CLIP ViT-B text tower (width 512, 12 layers), 1024 x 77 tokens   >= 60,000 texts/s
  clip-text-captions  the same tower, 1024 caption-length texts (7-19 tokens) padded to 77  >= 60,000 texts/s
  blip-caption        BLIP-base captioning, batch 256, greedy, exactly 20 new tokens       >= 2,500 captions/s
  blip-itm            BLIP-base ITM given the images' ViT tokens: 8 images x 512 texts of 35 tokens  >= 20,000 pairs/s

The peer is transformers with attn_implementation="sdpa" where the model has it (CLIP); transformers' BLIP has no
SDPA path, so it runs "eager" there, and the JSON records which one ran. Both sides run in torch.inference_mode,
weights cast to the precision (clipblip through `clipblip.load(dir, device=, precision=)`, transformers by `.to`).
The transformers ITM peer is given the same image tokens and runs its text encoder over them expanded to the texts
(its `forward` would also rerun the ViT per text). Rates: items / median seconds of the timed calls, each call
closed by torch.cuda.synchronize; the two sides alternate call by call. The JSON is rewritten after every case, so
a run cut short still leaves what it measured; cases that would start after --budget seconds are skipped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GOALS = {"clip-b16-image": 14_000, "clip-l14-image": 3_000, "clip-text": 60_000, "clip-text-captions": 60_000,
         "blip-caption": 2_500, "blip-itm": 20_000}
FULL = dict(image_batch=256, text_batch=1024, caption_batch=256, new_tokens=20, itm_images=8, itm_texts=512,
            itm_len=35)
TINY = dict(image_batch=4, text_batch=8, caption_batch=2, new_tokens=4, itm_images=2, itm_texts=4, itm_len=12)
_TINY_LAYERS = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2)


@dataclass
class Case:
    key: str
    label: str
    unit: str
    items: int
    ours: Callable
    theirs: Callable
    agree: Callable  # (our output, their output) -> str


# ---- models ------------------------------------------------------------------------------------------------------
def clip_config(arch: str, tiny: bool):
    from transformers import CLIPConfig

    if tiny:
        return CLIPConfig(text_config=_TINY_LAYERS, projection_dim=16,
                          vision_config={**_TINY_LAYERS, "image_size": 32, "patch_size": 8})
    if arch == "B/16":  # transformers' defaults are ViT-B/32 with the ViT-B text tower
        return CLIPConfig(vision_config=dict(patch_size=16))
    return CLIPConfig(projection_dim=768,
                      text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12),
                      vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                         num_hidden_layers=24, patch_size=14))


def blip_config(tiny: bool):
    import transformers as T

    if tiny:
        return T.BlipConfig(text_config={**_TINY_LAYERS, "encoder_hidden_size": 32}, image_text_hidden_size=16,
                            vision_config={**_TINY_LAYERS, "image_size": 32, "patch_size": 8})
    return T.BlipConfig(text_config={"num_attention_heads": 12})  # BLIP-base: ViT-B/16 at 384, BERT-base


def load_pair(cls_name: str, config, device: torch.device, precision: str):
    """The same random weights as clipblip's model and as transformers' (SDPA where it has it), on the device."""
    import transformers as T

    import clipblip

    cls = getattr(T, cls_name)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        cls(config).save_pretrained(d)
        ours = clipblip.load(d, device=str(device), precision=precision)
        try:
            theirs = cls.from_pretrained(d, attn_implementation="sdpa")
        except ValueError:  # "does not support ... scaled_dot_product_attention yet" (BLIP)
            theirs = cls.from_pretrained(d, attn_implementation="eager")
    theirs = theirs.to(device=device, dtype=DTYPES[precision]).eval()
    return ours, theirs, theirs.config._attn_implementation


# ---- cases -------------------------------------------------------------------------------------------------------
def _features(out) -> torch.Tensor:
    return (out if isinstance(out, torch.Tensor) else out.pooler_output).float()  # transformers 5 wraps them


def agree_features(a, b) -> str:
    return f"cos >= {torch.nn.functional.cosine_similarity(_features(a), _features(b), dim=-1).min().item():.4f}"


def clip_ids(n: int, caption_like: bool, device) -> torch.Tensor:
    """[n, 77]: [SOT] tokens [EOT], then pad 0. Caption-like rows hold 7-19 tokens, like COCO captions."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 49406, (n, 77), generator=g)
    ids[:, 0] = 49406
    ends = torch.randint(8, 21, (n,), generator=g) if caption_like else torch.full((n,), 76)
    ids[torch.arange(n), ends] = 49407
    ids[torch.arange(77) > ends[:, None]] = 0
    return ids.to(device)


def clip_cases(ours, theirs, arch: str, s: dict, device, dtype) -> list[Case]:
    size = theirs.config.vision_config.image_size
    px = torch.randn(s["image_batch"], 3, size, size, device=device, dtype=dtype)
    key = "clip-" + arch.lower().replace("/", "")
    cases = [Case(f"{key}-image", f"CLIP ViT-{arch} image tower, batch {s['image_batch']}", "images/s",
                  s["image_batch"], lambda: ours.encode_image(px),
                  lambda: theirs.get_image_features(pixel_values=px), agree_features)]
    if arch == "B/16":
        for suffix, caption_like in (("", False), ("-captions", True)):
            ids = clip_ids(s["text_batch"], caption_like, device)
            what = "caption-length texts padded to 77" if caption_like else "x 77 tokens"
            cases.append(Case(f"clip-text{suffix}", f"CLIP ViT-B text tower, {s['text_batch']} {what}", "texts/s",
                              s["text_batch"], lambda ids=ids: ours.encode_text(ids),
                              lambda ids=ids: theirs.get_text_features(input_ids=ids), agree_features))
    return cases


def caption_case(ours, theirs, s: dict, device, dtype) -> Case:
    from clipblip.generate import GenerationConfig
    from clipblip.tasks.caption import caption_ids

    size = theirs.config.vision_config.image_size
    px = torch.randn(s["caption_batch"], 3, size, size, device=device, dtype=dtype)
    t, n = ours.config.text, s["new_tokens"]
    cfg = GenerationConfig(max_new_tokens=n, min_new_tokens=n, eos_id=t.sep_id, pad_id=t.pad_id)
    start = torch.tensor([[t.dec_id]])

    def agree(a, b) -> str:
        return f"{(torch.tensor(a, device=b.device) == b[:, -n:]).float().mean().item():.0%} tokens equal"

    return Case("blip-caption", f"BLIP-base caption, batch {s['caption_batch']}, greedy, {n} new tokens",
                "captions/s", s["caption_batch"], lambda: caption_ids(ours, px, start, cfg),
                lambda: theirs.generate(pixel_values=px, max_new_tokens=n, min_new_tokens=n), agree)


def itm_case(ours, theirs, s: dict, device, dtype) -> Case:
    from clipblip.tasks.itm import itm_scores

    size = theirs.config.vision_config.image_size
    with torch.inference_mode():  # "given image features": the ViT runs once, here, untimed
        tokens = ours.image_tokens(torch.randn(s["itm_images"], 3, size, size, device=device, dtype=dtype))
    ids = torch.randint(1000, 30000, (s["itm_texts"], s["itm_len"]), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]: transformers' ITM input; no padding
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    image_mask = torch.ones(ids.shape[0], tokens.shape[1], dtype=torch.long, device=device)

    def hf_itm():
        rows = []
        for i in range(tokens.shape[0]):
            h = theirs.text_encoder(input_ids=ids, attention_mask=mask, encoder_attention_mask=image_mask,
                                    encoder_hidden_states=tokens[i:i + 1].expand(ids.shape[0], -1, -1))
            rows.append(theirs.itm_head(h.last_hidden_state[:, 0]))
        return torch.stack(rows)

    def agree(a, b) -> str:
        return f"max dp {(a.float().softmax(-1) - b.float().softmax(-1)).abs().max().item():.4f}"

    pairs = s["itm_images"] * s["itm_texts"]
    return Case("blip-itm", f"BLIP-base ITM given image tokens, {s['itm_images']} images x {s['itm_texts']} texts "
                f"of {s['itm_len']} tokens", "pairs/s", pairs, lambda: itm_scores(ours, tokens, ids), hf_itm, agree)


# ---- timing ------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(fn, device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def measure(case: Case, device, warmup: int, repeat: int, seconds: float) -> dict:
    """Warm-up, output check, peak memory, then calls alternating ours/theirs until `repeat` each or `seconds`."""
    res = {"label": case.label, "unit": case.unit, "items": case.items, "goal": GOALS.get(case.key)}
    sides = {"clipblip": case.ours, "transformers": case.theirs}
    outs = {}
    for name, fn in sides.items():
        try:
            for _ in range(warmup):
                outs[name] = fn()
            sync(device)
            res[name] = {"peak_memory_bytes": peak_memory(fn, device)}
        except Exception:
            res[name] = {"error": traceback.format_exc()}
            print(f"{case.key} / {name} FAILED:\n{res[name]['error']}", file=sys.stderr, flush=True)
    if len(outs) == 2:
        res["agreement"] = case.agree(outs["clipblip"], outs["transformers"])
    live = {n: fn for n, fn in sides.items() if "error" not in res[n]}
    times = {n: [] for n in live}
    t_end, done = time.perf_counter() + seconds, lambda: min(len(t) for t in times.values())
    while live and done() < repeat and (done() < 3 or time.perf_counter() < t_end):
        for name, fn in live.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    for name in live:
        res[name].update(seconds=times[name], rate=case.items / statistics.median(times[name]))
    return res


def verdicts(res: dict, tiny: bool) -> None:
    ours, theirs = res.get("clipblip", {}).get("rate"), res.get("transformers", {}).get("rate")
    res["speedup"] = ours / theirs if ours and theirs else None
    res["goal_met"] = None if ours is None or res["goal"] is None or tiny else ours >= res["goal"]


# ---- run ---------------------------------------------------------------------------------------------------------
def machine(device: torch.device, args) -> dict:
    import transformers

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip() if gpu else None
    except (OSError, subprocess.SubprocessError):
        smi = None
    return dict(gpu=gpu, nvidia_smi=smi, device=str(device), torch=torch.__version__, cuda=torch.version.cuda,
                transformers=transformers.__version__, python=platform.python_version(), cpu_count=os.cpu_count(),
                threads=torch.get_num_threads(), precision=args.precision, tiny=args.tiny,
                date=datetime.datetime.now().isoformat(timespec="seconds"))


def groups(tiny: bool):
    """(name, transformers class, config, case builder) per model, loaded one at a time."""
    return [("CLIP ViT-B/16", "CLIPModel", clip_config("B/16", tiny), lambda o, t, *a: clip_cases(o, t, "B/16", *a)),
            ("CLIP ViT-L/14", "CLIPModel", clip_config("L/14", tiny), lambda o, t, *a: clip_cases(o, t, "L/14", *a)),
            ("BLIP caption", "BlipForConditionalGeneration", blip_config(tiny), lambda *a: [caption_case(*a)]),
            ("BLIP ITM", "BlipForImageTextRetrieval", blip_config(tiny), lambda *a: [itm_case(*a)])]


def run(args, device: torch.device, report: dict, write) -> None:
    sizes, t_start = (TINY if args.tiny else FULL), time.perf_counter()
    for name, cls_name, config, build in groups(args.tiny):
        if time.perf_counter() - t_start > args.budget:
            report["skipped"].append(f"{name}: --budget of {args.budget:g} s spent before it started")
            continue
        ours, theirs, attn = load_pair(cls_name, config, device, args.precision)
        with torch.inference_mode():
            for case in build(ours, theirs, sizes, device, DTYPES[args.precision]):
                res = measure(case, device, args.warmup, args.repeat, args.seconds)
                res["transformers_attention"] = attn
                verdicts(res, args.tiny)
                report["cases"][case.key] = res
                write()
                print(summary_line(case.key, res), flush=True)
        del ours, theirs
        if device.type == "cuda":
            torch.cuda.empty_cache()


def summary_line(key: str, res: dict) -> str:
    rate = {n: res.get(n, {}).get("rate") for n in ("clipblip", "transformers")}
    goal = "" if res["goal_met"] is None else f"; goal {res['goal']:,} {'met' if res['goal_met'] else 'MISSED'}"
    return (f"{key}: clipblip {rate['clipblip'] or 0:,.0f} {res['unit']}, transformers "
            f"({res['transformers_attention']}) {rate['transformers'] or 0:,.0f}, speed-up "
            f"{res['speedup'] or 0:.2f}x; {res.get('agreement', 'no output check')}{goal}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON of the results")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--tiny", action="store_true", help="tiny configs and batches: checks the script, not speed")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per side at most")
    ap.add_argument("--seconds", type=float, default=12.0, help="timed seconds per case at most (3 calls at least)")
    ap.add_argument("--budget", type=float, default=400.0, help="start no case after this many seconds")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's; 1 with --tiny)")
    args = ap.parse_args()
    if args.threads or args.tiny:
        torch.set_num_threads(args.threads or 1)  # tiny ops on a few cores are far slower with more threads
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
    from _torchvision_shim import define_missing_ops

    define_missing_ops()  # transformers imports torchvision; see tests/_torchvision_shim.py
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device(args.device)
    report = {"machine": machine(device, args), "cases": {}, "skipped": []}

    def write():
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))

    print("# " + ", ".join(f"{k}: {v}" for k, v in report["machine"].items()), flush=True)
    run(args, device, report, write)
    write()
    failed = [k for k, r in report["cases"].items() if any("error" in r[n] for n in ("clipblip", "transformers"))]
    raise SystemExit(1 if failed or report["skipped"] else 0)


if __name__ == "__main__":
    main()
