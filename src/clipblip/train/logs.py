"""What a run writes as it goes (rank 0 only): a progress bar, metrics.jsonl, rejects.jsonl, TensorBoard if asked."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from ..errors import ClipBlipError
from ..files import write_atomic


class Logger:
    def __init__(self, out: Path, cfg, main: bool, start_step: int):
        self.main, self.cfg = main, cfg
        self.metrics_path, self.rejects_path = out / "metrics.jsonl", out / "rejects.jsonl"
        self._bar = self._tb = None
        self._window: list[tuple[float, float]] = []
        self.n_rejects = 0
        if not main:
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        self._truncate_after(start_step)
        self.rejects_path.touch()  # the documented file exists from the start, empty while nothing is rejected
        self._metrics = open(self.metrics_path, "a")
        if cfg.progress:
            self._bar = tqdm(total=cfg.steps, initial=start_step, desc="train", dynamic_ncols=True)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ClipBlipError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
            self._tb = SummaryWriter(str(out / "tensorboard"))

    def _truncate_after(self, step: int) -> None:
        """A resumed run redoes the steps after its checkpoint: drop their old lines, atomically."""
        if not self.metrics_path.exists():
            return
        keep = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        write_atomic(self.metrics_path, "".join(line + "\n" for line in keep))

    def _write(self, record: dict) -> None:
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def step(self, step: int, values: dict, seconds: float, lr: float) -> None:
        self._window = (self._window + [(values["samples"], seconds)])[-20:]
        rate = sum(s for s, _ in self._window) / max(sum(t for _, t in self._window), 1e-9)
        if not self.main:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{values['loss']:.4f}", samples_s=f"{rate:.0f}")
        if step % self.cfg.log_every == 0 or step == self.cfg.steps:
            record = {"step": step, **{k: round(v, 6) for k, v in values.items() if k != "samples"},
                      "lr": lr, "samples_per_s": round(rate, 1), "time": time.time()}
            self._write(record)
            if self._tb is not None:
                for k, v in record.items():
                    if k not in ("step", "time"):
                        self._tb.add_scalar(f"train/{k}", v, step)

    def eval(self, step: int, metrics: dict) -> None:
        if not self.main or not metrics:
            return
        self._write({"step": step, "eval": metrics, "time": time.time()})
        if self._bar is not None:
            self._bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(f"val/{k}", v, step)

    def rejects(self, skipped) -> None:
        """Records whose image could not be read: one JSON line each (every rank appends its own)."""
        if not skipped:
            return
        self.n_rejects += len(skipped)
        self.rejects_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.rejects_path, "a") as f:
            for item, reason in skipped:
                f.write(json.dumps({"id": item, "reason": reason}) + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.main:
            self._metrics.close()
            if self._tb is not None:
                self._tb.close()
