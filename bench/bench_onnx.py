"""CLIP towers under onnxruntime against clipblip (eager, fp32) on the CPU: the same weights, one process.

    .venv/bin/python bench/bench_onnx.py [--threads 1] [--repeat 7] [--models vit-b-32 shapes-clip] [--json OUT]

Models: a ViT-B/32-sized CLIP with random weights (clipblip's ClipConfig defaults: 224 px, patch 32, width 768 x
12 layers; text 512 x 12 layers, 77 tokens, OpenAI's BPE) and the shipped shapes-clip. Each is exported with
`clipblip.export_onnx.export_onnx` (opset 17) and run by an onnxruntime session with `--threads` intra-op threads
(one inter-op thread, every graph optimization on); clipblip runs with `torch.set_num_threads(--threads)` under
`torch.inference_mode`.

Cases, at batch 1 and 32: the image tower (random pixels); the text tower on captions of 3-11 words that the
tokenizer pads to the context length. clipblip cuts that padding itself (attention is causal and it pools at the
EOT), so onnxruntime is timed twice there: fed the padded ids as they come, and fed them cut after the batch's
last EOT, which the graph allows.

Timing: two warm-up calls each, then `--repeat` rounds in which every contestant of a case runs once, in turn, so
that the drift of a shared machine hits all alike; a time is the median of the rounds. "ratio" is clipblip's time
over the contestant's: above 1, onnxruntime is faster. Outputs are compared too (max abs difference).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import machine

# words that both OpenAI's BPE and shapes-clip's closed vocabulary know
CAPTIONS = ["a red circle", "two blue squares left of a star", "a small green triangle above a large yellow hexagon",
            "three gray crosses"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load_model(name: str):
    import clipblip
    from clipblip.config import ClipConfig
    from clipblip.models import CLIP

    if name == "vit-b-32":
        torch.manual_seed(0)
        return CLIP(ClipConfig()).eval()
    return clipblip.load(name, device="cpu", precision="fp32")


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def median_times(contestants: dict, repeat: int) -> dict:
    """name -> median seconds over `repeat` rounds, every contestant once per round, in turn."""
    for fn in contestants.values():
        fn(), fn()
    times = {name: [] for name in contestants}
    for _ in range(repeat):
        for name, fn in contestants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cases(model, folder: Path, threads: int, batch: int):
    """(case, {contestant: zero-argument call returning a numpy array})."""
    # one session per contestant: a session fed two shapes in turn re-plans its memory at every switch
    image, text, text_cut = (session(folder / f"{n}.onnx", threads) for n in ("image", "text", "text"))
    s = model.config.vision.image_size
    pixels = torch.randn(batch, 3, s, s)
    ids = model.tokenize((CAPTIONS * 8)[:batch])
    cut = ids[:, : int((ids == model.config.text.eot_id).int().argmax(1).max()) + 1]
    yield f"image tower, batch {batch}", {
        "clipblip": lambda: model.encode_image(pixels).numpy(),
        "onnxruntime": lambda: image.run(None, {"pixel_values": pixels.numpy()})[0]}
    yield f"text tower, batch {batch} ({ids.shape[1]} tokens, captions of {cut.shape[1]} at most)", {
        "clipblip": lambda: model.encode_text(ids).numpy(),
        "onnxruntime": lambda: text.run(None, {"input_ids": ids.numpy()})[0],
        "onnxruntime, cut": lambda: text_cut.run(None, {"input_ids": cut.numpy()})[0]}


def bench_model(name: str, threads: int, repeat: int) -> list[dict]:
    from clipblip.export_onnx import export_onnx

    model = load_model(name)
    rows = []
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        start = time.perf_counter()
        folder = export_onnx(model, Path(d) / name)
        print(f"# {name}: exported in {time.perf_counter() - start:.1f} s", flush=True)
        for batch in (1, 32):
            for case, contestants in cases(model, folder, threads, batch):
                want = contestants["clipblip"]()
                diff = max(float(np.abs(fn() - want).max()) for fn in contestants.values())
                times = median_times(contestants, repeat)
                row = {"model": name, "case": case, "threads": threads, "max_abs_diff": diff,
                       **{f"{k} ms": round(v * 1e3, 1) for k, v in times.items()},
                       **{f"ratio {k}": round(times["clipblip"] / v, 2) for k, v in times.items() if k != "clipblip"}}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--models", nargs="+", default=["vit-b-32", "shapes-clip"])
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"# {cpu_name()}; {machine()}; onnxruntime {onnxruntime.__version__}; "
          f"{datetime.date.today().isoformat()}", flush=True)
    rows = [row for name in args.models for row in bench_model(name, args.threads, args.repeat)]
    print("\n| model | case | clipblip ms | onnxruntime ms | ratio | onnxruntime, cut ms | ratio | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cut = (f"{r['onnxruntime, cut ms']} | {r['ratio onnxruntime, cut']}x" if "onnxruntime, cut ms" in r
               else "- | -")
        print(f"| {r['model']} | {r['case']} | {r['clipblip ms']} | {r['onnxruntime ms']} | "
              f"{r['ratio onnxruntime']}x | {cut} | {r['max_abs_diff']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
