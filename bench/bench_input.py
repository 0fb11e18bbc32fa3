"""Input throughput: decode + preprocess of a folder of JPEGs in N threads, alone and feeding the model.

    PYTHONPATH=src .venv/bin/python bench/bench_input.py [--n 2000] [--workers 0,1,2,4] [--batch-size 32]
                                                         [--dir DIR] [--repeat 3] [--threads T]

Writes `--n` photo-like 640x480 JPEGs (bench_image.photo_like: smooth colour field + gradient + sensor-like noise,
quality 90, ~90 KB each) to --dir (default: a temp dir; files already there are reused), loads the embedded
shapes-clip (cpu, fp32) and, for each worker count, measures over the whole folder:
  (a) decode + preprocess alone: `tasks.inputs.pixel_batches`, the batches thrown away (images/s);
  (b) what `clipblip embed` runs: `tasks.inputs.image_features` with the same workers (images/s);
and b/a. The goal is b/a >= 0.9: the model is not what bounds (b), decoding is. The model alone on preprocessed
batches is timed too, to show how much of (b) it takes. Best of --repeat passes; (a) and (b) alternate so that
both see the same machine state. Torch keeps its default thread count unless --threads is given.

First, the check that threads are enough: while another thread runs one long call of the preprocessing (PIL
decode, PIL resize, the torch uint8 -> float copy and normalization, torch's antialiased resize of the fast path),
the longest pause of the main thread's Python loop. A call that held the GIL would pause it for the whole call;
one that releases it pauses it for a scheduler slice (the last row, a sort, holds it: the control).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import clipblip
from bench_image import photo_like
from clipblip.jobs import default_workers
from clipblip.tasks.inputs import image_features, pixel_batches
from common import machine


def write_images(folder: Path, n: int) -> list[Path]:
    """n photo-like 640x480 JPEGs (quality 90) in `folder`; ones already there are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]

    def write(i: int) -> None:
        if not paths[i].exists():
            tmp = paths[i].with_suffix(".tmp")
            photo_like(640, 480, np.random.default_rng(i)).save(tmp, "JPEG", quality=90)
            tmp.replace(paths[i])

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, range(n)))
    return paths


def gil_check() -> None:
    """For each long call: its duration and the main thread's longest pause while it runs (see the docstring)."""
    big = photo_like(4000, 3000, np.random.default_rng(0))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    u8 = torch.from_numpy(np.array(big)).permute(2, 0, 1)
    floats = np.random.default_rng(0).random(2_000_000).tolist()
    calls = {"PIL decode 4000x3000": lambda: Image.open(io.BytesIO(buf.getvalue())).load(),
             "PIL bicubic resize to 298x224": lambda: big.resize((298, 224), Image.Resampling.BICUBIC),
             "torch uint8->float, normalize": lambda: torch.empty(u8.shape).copy_(u8).mul_(0.5).sub_(0.2),
             "torch antialiased resize": lambda: torch.nn.functional.interpolate(
                 u8[None], size=(224, 298), mode="bicubic", antialias=True),
             "control: list.sort (holds the GIL)": lambda: sorted(floats)}
    for name, fn in calls.items():
        done, took, pauses = threading.Event(), [], [0.0]

        def call(fn=fn, done=done, took=took):
            took.append(timed(fn))
            done.set()

        thread, last = threading.Thread(target=call), time.perf_counter()
        thread.start()
        while not done.is_set():
            now = time.perf_counter()
            pauses.append(now - last)
            last = now
        thread.join()
        print(f"  {name:34s} {took[0] * 1000:5.0f} ms; main thread's longest pause {max(pauses) * 1000:5.1f} ms")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                "unknown CPU")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", default="0,1,2,4")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench_input_"))
    start = time.perf_counter()
    paths = write_images(folder, args.n)
    print(f"{args.n} JPEGs 640x480 q90 in {folder} ({time.perf_counter() - start:.0f} s to write or find)")
    model = clipblip.load("shapes-clip", device="cpu", precision="fp32")
    bs = args.batch_size

    def decode(w: int):
        for _ in pixel_batches(model, paths, bs, workers=w):
            pass

    def embed(w: int):
        image_features(model, paths, bs, workers=w)

    batches = [pixels for _, pixels in pixel_batches(model, paths[: bs * 8], bs)]

    def model_only():
        with torch.no_grad():
            for pixels in batches:
                model.encode_image(pixels)

    print(machine(), "|", cpu_name(), f"| load average {os.getloadavg()[0]:.1f} at start")
    print("GIL: a long call in another thread, and how long it stops the main thread")
    gil_check()
    print(f"shapes-clip ({model.preprocess.size}px, {model.preprocess.resize}), batch {bs}, "
          f"default workers here: {default_workers()}")
    model_rate = len(batches) * bs / min(timed(model_only) for _ in range(args.repeat + 1))
    print(f"model alone on preprocessed batches: {model_rate:,.0f} images/s")
    print(f"{'workers':>8} {'(a) decode+pre':>15} {'(b) embed':>10} {'b/a':>6}")
    for w in (int(x) for x in args.workers.split(",")):
        a, b = [], []
        decode(w)  # warm-up: file cache, first-call allocations
        for _ in range(args.repeat):
            a.append(timed(lambda: decode(w)))
            b.append(timed(lambda: embed(w)))
        ra, rb = args.n / min(a), args.n / min(b)
        print(f"{w:>8} {ra:>15,.0f} {rb:>10,.0f} {rb / ra:>6.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (this machine is shared: the figures are indicative)")


if __name__ == "__main__":
    main()
