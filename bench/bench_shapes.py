"""Shapes world generation speed: images/second on one core, so that generation is known never to bound training.

    PYTHONPATH=src .venv/bin/python bench/bench_shapes.py [--seconds 1] [--sizes 64 128 224]

For each image size: `render` (scene -> PIL image, 2x supersampled; and without antialiasing), `scene + render`,
and `sample` (everything a training step gets: scene, image, 5 captions, their hard negatives, ~7 VQA pairs,
labels), on the train split and on the web split (which adds noisy captions). `text only` is sample minus the
image. One process, one thread, best of 3 rounds of about `--seconds` each, over fresh indices every round (so no
cache of a previous round helps, as in training).
"""

from __future__ import annotations

import argparse
import time

import torch

from clipblip.data.shapes import ShapesWorld, render
from common import machine


def rate(fn, seconds: float, rounds: int = 3) -> float:
    """Calls/second of fn(i) for fresh i: best of `rounds` rounds of about `seconds`."""
    best, i = 0.0, 0
    fn(i)  # warm up (PIL import paths, background tiles)
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(50):
                i += 1
                fn(i)
            n += 50
        best = max(best, n / (time.perf_counter() - start))
    return best


def text_only_rate(world: ShapesWorld, seconds: float) -> float:
    """sample() with the image drawing stubbed out (the same work otherwise)."""
    import clipblip.data.shapes as shapes

    real, shapes.render = shapes.render, lambda *args: None
    try:
        return rate(lambda i: world.sample("train", i), seconds)
    finally:
        shapes.render = real


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    args = ap.parse_args()
    torch.set_num_threads(1)  # not used here; one thread so the machine line reads like the other benches
    print(f"machine: {machine()}")
    print("| size | render (AA 2x) | render (no AA) | scene + render | sample train | captions only | sample web "
          "| text only |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        world = ShapesWorld(seed=0, image_size=size)
        scenes = [world.scene("train", i) for i in range(2000)]
        row = [rate(lambda i: render(scenes[i % 2000], size), args.seconds),
               rate(lambda i: render(scenes[i % 2000], size, antialias=False), args.seconds),
               rate(lambda i: render(world.scene("train", i), size), args.seconds),
               rate(lambda i: world.sample("train", i), args.seconds),
               rate(lambda i: world.sample("train", i, captions_only=True), args.seconds),
               rate(lambda i: world.sample("web", i), args.seconds),
               text_only_rate(world, args.seconds)]
        print(f"| {size} | " + " | ".join(f"{r:,.0f}/s" for r in row) + " |", flush=True)


if __name__ == "__main__":
    main()
