"""Training checkpoints: atomic, the last K kept, everything a bit-identical resume needs, read as data.

A checkpoint is one file `step-XXXXXXXX.pt` holding the model, optimizer, momentum encoder and queues, RNG states
and the step (the data position follows from it). It is written under a temporary name, flushed to disk and
renamed: a run killed while writing leaves only a `.tmp` file, which is never read.

Files are data, never code: a checkpoint is read with `weights_only=True`, which admits tensors and plain values
(dicts, lists, numbers, strings) and refuses every other object a pickle names, so the RNG states are stored as
tensors and lists. A newest checkpoint that cannot be read (cut short, foreign, a pickle that would run code) or
does not fit the run is reported in one line on stderr and passed over: the run resumes from the newest good one.
"""

from __future__ import annotations

import pickle
import random
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import ClipBlipError
from ..files import atomic_write

PATTERN = "step-*.pt"
KEYS = ("step", "model", "optimizer", "momentum", "rng")
# what a checkpoint that loads can still get wrong when applied to a model and optimizer of another shape
_MISFIT = (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)


def save(directory: Path, step: int, state: dict, keep: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:08d}.pt"
    with atomic_write(path, "wb") as f:
        torch.save(state, f)
    # Only this one and older count: a newer name is one a resume passed over as unusable. Counting it would
    # delete a good checkpoint in its place (with keep=1, the one just written).
    older = [p for p in checkpoints(directory) if p.name <= path.name]
    for old in older[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def checkpoints(directory: Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    return sorted(directory.glob(PATTERN)) if directory.is_dir() else []


def latest(directory: Path) -> Path | None:
    found = checkpoints(directory)
    return found[-1] if found else None


def load(path: Path) -> dict:
    """A checkpoint's contents, tensors and plain values only; ClipBlipError if it is not a training checkpoint."""
    try:
        with warnings.catch_warnings():  # torch warns, in many lines, about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ClipBlipError(f"checkpoint {path} holds objects other than tensors and plain values; they are never "
                            "unpickled (that could run code)") from None
    except Exception as e:  # cut short, not a zip, a disk error: torch raises many kinds
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else "the file ends early"
        raise ClipBlipError(f"cannot read checkpoint {path} ({type(e).__name__}: {detail})") from None
    missing = [k for k in KEYS if k not in saved] if isinstance(saved, dict) else list(KEYS)
    if missing:
        raise ClipBlipError(f"{path} is not a clipblip training checkpoint (no {', '.join(missing)})")
    if not isinstance(saved["step"], int) or saved["step"] < 0:
        raise ClipBlipError(f"{path} is not a clipblip training checkpoint (its step is {saved['step']!r})")
    return saved


def restore(directory: Path, apply: Callable[[dict], None], warn: bool = True) -> Path:
    """Apply the newest checkpoint that loads and fits; warn (when `warn`) about each newer one passed over."""
    found = checkpoints(directory)
    if not found:
        raise ClipBlipError(f"nothing to resume: {directory} holds no complete checkpoint")
    for path in reversed(found):
        try:
            apply(load(path))
            return path
        except ClipBlipError as e:
            reason = str(e)
        except _MISFIT as e:
            reason = f"checkpoint {path} does not fit this run ({type(e).__name__}: {str(e).strip()[:160]})"
        if warn:
            print(f"clipblip: warning: {' '.join(reason.split())}; resuming from the one before", file=sys.stderr)
    raise ClipBlipError(f"none of the {len(found)} checkpoints in {directory} can be resumed from (the warnings "
                        "above say why); delete them to start the run again, or give another out=")


def rng_state() -> dict:
    """Every generator a step draws from, as tensors and plain values (what weights_only=True reads back)."""
    version, key, gauss = random.getstate()
    name, mt, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": [version, torch.tensor(key, dtype=torch.int64), gauss],
             "numpy": [name, torch.from_numpy(mt.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, key, gauss = state["python"]
    random.setstate((version, tuple(key.tolist()), gauss))
    name, mt, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, mt.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
