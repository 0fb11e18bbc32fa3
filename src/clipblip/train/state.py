"""Training checkpoints: atomic, the last K kept, everything a bit-identical resume needs.

A checkpoint is one file `step-XXXXXXXX.pt` holding the model, optimizer, momentum encoder and queues, RNG states
and the step (the data position follows from it). It is written under a temporary name, flushed to disk and
renamed: a run killed while writing leaves only a `.tmp` file, which is never read, so the newest complete
checkpoint is always the newest `step-*.pt`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..errors import ClipBlipError
from ..files import atomic_write

PATTERN = "step-*.pt"


def save(directory: Path, step: int, state: dict, keep: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:08d}.pt"
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
    for old in sorted(directory.glob(PATTERN))[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def latest(directory: Path) -> Path | None:
    found = sorted(directory.glob(PATTERN)) if directory.is_dir() else []
    return found[-1] if found else None


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a damaged file (disk error): say which and what to do
        raise ClipBlipError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}; delete it to resume from "
                            "the one before") from None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
