"""Timing helpers shared by the benchmark scripts: best-of-N wall time after warm-up, and the machine line."""

from __future__ import annotations

import os
import platform
import time

import torch


def best_time(fn, repeat: int = 5, warmup: int = 2) -> float:
    """Seconds of the fastest of `repeat` calls (the least disturbed by the other processes on the machine)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


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
