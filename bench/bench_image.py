"""Decode + preprocess throughput: PIL open + transformers CLIPImageProcessor vs clipblip Preprocess (exact, fast).

Also shown for reference: transformers' PIL backend (CLIPImageProcessorPil, the numerics of transformers 4, and
the only transformers path that equals OpenAI's preprocessing up to the crop offset).

    PYTHONPATH=src .venv/bin/python bench/bench_image.py [--seconds 2] [--images 6]

One process, one torch thread. For each JPEG size it writes photo-like test images (smooth random field +
gradient + sensor-like noise, quality 90) to a temp dir, times images/second for each pipeline over the same
files (best of 5 interleaved rounds, one image per call), prints the ratios, and measures how far the fast path
(JPEG draft + torch resize) lands from exact mode, in [0, 1] pixel units before normalization.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, features

from clipblip.image import OPENAI_MEAN, OPENAI_STD, Preprocess
from common import define_torchvision_ops, machine

SIZES = [(640, 480), (1920, 1080)]


def photo_like(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    # Low-frequency colour blobs + gradient + pixel noise: JPEG-compresses and decodes like a photo, unlike
    # pure noise (too many bits) or a flat gradient (too few).
    coarse = rng.uniform(30, 225, (height // 60 + 2, width // 60 + 2, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
    ramp = np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    noisy = field + ramp + rng.normal(0, 8, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def rates(pipelines: dict, paths, seconds: float, rounds: int = 5) -> dict:
    """Images/second per pipeline: best of `rounds` rounds of about `seconds` each.

    Rounds are interleaved across pipelines so that a burst of load on the (shared) machine hits them alike.
    """
    best = dict.fromkeys(pipelines, 0.0)
    for fn in pipelines.values():  # warm up: first-call allocations, file cache
        for p in paths:
            fn(p)
    for _ in range(rounds):
        for name, fn in pipelines.items():
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                for p in paths:
                    fn(p)
                n += len(paths)
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def fast_path_error(paths, exact: Preprocess, fast: Preprocess) -> tuple[float, float]:
    """Max and mean |fast - exact| in [0, 1] units (normalization undone)."""
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    diff = (fast(paths) - exact(paths)).abs() * std
    return diff.max().item(), diff.mean().item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--images", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    define_torchvision_ops()  # transformers' image processors import torchvision
    from transformers import CLIPImageProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    hf, hf_pil = CLIPImageProcessor(), CLIPImageProcessorPil()
    exact, fast = Preprocess(), Preprocess(fast=True)
    assert exact.mean == OPENAI_MEAN and tuple(hf.image_mean) == OPENAI_MEAN
    print(f"{machine()}, Pillow {PIL.__version__} (libjpeg-turbo {features.version('jpg')})")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in SIZES:
            paths = []
            for i in range(args.images):
                path = Path(tmp) / f"{width}x{height}_{i}.jpg"
                photo_like(width, height, rng).save(path, quality=90)
                paths.append(str(path))
            r = rates(
                {
                    "ref": lambda p: hf(Image.open(p), return_tensors="pt")["pixel_values"],
                    "ref_pil": lambda p: hf_pil(Image.open(p), return_tensors="pt")["pixel_values"],
                    "exact": exact,
                    "fast": fast,
                },
                paths,
                args.seconds,
            )
            ref, ours, ours_fast = r["ref"], r["exact"], r["fast"]
            err_max, err_mean = fast_path_error(paths, exact, fast)
            bits = 8 * sum(Path(p).stat().st_size for p in paths) / (len(paths) * width * height)
            print(f"{width}x{height} JPEG q90 ({bits:.1f} bits/pixel), images/s per core:")
            print(f"  PIL open + CLIPImageProcessor  {ref:8.1f}")
            print(f"  (PIL open + ...ProcessorPil    {r['ref_pil']:8.1f}   {r['ref_pil'] / ref:.2f}x)")
            print(f"  clipblip exact                 {ours:8.1f}   {ours / ref:.2f}x")
            print(f"  clipblip fast (JPEG draft)     {ours_fast:8.1f}   {ours_fast / ref:.2f}x")
            print(f"  fast vs exact in [0,1] units: max {err_max:.4f}, mean {err_mean:.5f}")


if __name__ == "__main__":
    main()
