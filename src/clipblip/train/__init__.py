"""Training: one loop (loop.py), objectives as functions (objectives.py), presets and overrides (config.py)."""

from .config import PRESETS, TrainConfig, resolve
from .loop import Trainer, train

__all__ = ["PRESETS", "TrainConfig", "Trainer", "resolve", "train"]
