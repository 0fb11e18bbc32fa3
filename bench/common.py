"""Timing helpers shared by the benchmark scripts: best-of-N wall time after warm-up, and the machine line."""

from __future__ import annotations

import os
import platform
import time

import torch

from clipblip.stats import timed


def best_time(fn, repeat: int = 5, warmup: int = 2) -> float:
    """Seconds of the fastest of `repeat` calls (the least disturbed by the other processes on the machine)."""
    return timed(fn, repeat, warmup)["min"]


def compare(theirs, ours, repeat: int = 7, warmup: int = 2) -> tuple[float, float]:
    """Best-of-`repeat` seconds of each, the two calls alternating so that both see the same machine state
    (on a shared VM the speed drifts by tens of percent over a minute)."""
    for _ in range(warmup):
        theirs(), ours()
    t_theirs, t_ours = [], []
    for _ in range(repeat):
        for fn, times in ((theirs, t_theirs), (ours, t_ours)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(t_theirs), min(t_ours)


def machine() -> str:
    return (f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {platform.python_version()}")


def define_torchvision_ops() -> None:
    """transformers imports torchvision when installed; see tests/_torchvision_shim.py."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _torchvision_shim import define_missing_ops

    define_missing_ops()
