"""The one training loop: every objective, one process or many under torchrun, killed and resumed at will.

    from clipblip.train import resolve, train
    train(resolve("shapes-clip", overrides=["steps=500"]))

Outputs under `cfg.out`: train_config.json, metrics.jsonl (one line per logged step and per evaluation),
rejects.jsonl (records skipped for unreadable images), checkpoints/step-*.pt, and model/ (the native format,
loadable by clipblip.load) at the end.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import checkpoint as native
from .. import config as model_config
from .. import distributed
from ..errors import ClipBlipError
from ..files import atomic_path
from . import objectives, optim, state
from .config import TrainConfig
from .data import Collate, loader, to_device
from .logs import Logger
from .momentum import Momentum


class _Runner(torch.nn.Module):
    """DDP hooks gradients through forward(): the objective runs inside it. `ctx` is set before each call."""

    def __init__(self, model, objective):
        super().__init__()
        self.model, self.objective, self.ctx = model, objective, None

    def forward(self, batch):
        return self.objective(self.model, batch, self.ctx)


def build_model(cfg: TrainConfig):
    if cfg.init:
        from ..loading import load

        model = load(cfg.init, device="cpu", precision="fp32")  # training keeps fp32 weights
        if objectives.get(cfg.objective).untie_decoder and getattr(model.config, "tie_decoder", False):
            model = _untied(model)
        return model
    if not cfg.model:
        raise ClipBlipError("no model: give `model` (a model config, as a preset does) or `init` (a checkpoint)")
    model = native.build(model_config.from_dict(cfg.model))
    optim.init_weights(model)
    if cfg.init_vision:
        _load_vision(model, cfg.init_vision)
    return model


def _load_vision(model, source: str) -> None:
    """Copy the image tower of `source` into `model` (its projection excepted: each model has its own)."""
    from ..loading import load

    donor = load(source, device="cpu", precision="fp32").visual.state_dict()
    own = model.visual.state_dict()
    keys = [k for k in own if not k.startswith("proj")]
    bad = [k for k in keys if k not in donor or donor[k].shape != own[k].shape]
    if bad:
        raise ClipBlipError(f"init_vision={source}: its image tower does not fit this model's ({', '.join(bad[:5])}); "
                            "give both the same vision config")
    model.visual.load_state_dict({k: donor[k] for k in keys}, strict=False)


def _untied(model):
    """A copy whose decoder has weights of its own. Pretraining shares the decoder's cross-attention and MLP
    with the encoder; in VQA the encoder attends to the image and the decoder to the question, so BLIP
    fine-tunes them apart, starting from the same values."""
    import dataclasses

    cfg = dataclasses.replace(model.config, tie_decoder=False)
    untied = native.build(cfg)
    untied.load_state_dict(model.state_dict())
    return untied


def open_records(cfg: TrainConfig, rank: int = 0, world: int = 1):
    if cfg.data == "shapes":
        from ..data.shapes_records import ShapesRecords

        spec = objectives.get(cfg.objective)
        return ShapesRecords("train", captions_only=not (spec.questions or spec.edits), **cfg.shapes)
    from ..data.readers import infer_format, open_dataset

    if (cfg.data_format or infer_format(cfg.data)) == "webdataset":
        # an iterable source: each rank reads its own shards, from a skip position on resume
        return lambda skip: open_dataset(cfg.data, format="webdataset", rank=rank, world_size=world, start=skip)
    records = open_dataset(cfg.data, format=cfg.data_format, image_root=cfg.image_root, split=cfg.split)
    if records.rejects:
        print(f"clipblip: {records.rejects.summary()}", file=sys.stderr)
    return records


def _clamp_temperature(model) -> None:
    with torch.no_grad():
        if model.config.family == "clip":
            model.logit_scale.clamp_(0, math.log(100))  # CLIP caps the inverse temperature at 100
        elif "itc" in model.config.parts:
            model.temp.clamp_(0.001, 0.5)  # BLIP's bounds


def _compile_towers(model) -> None:
    """torch.compile each tower in place (`Module.compile`: the weights keep their names, so checkpoints and the
    momentum copy are unchanged). Towers rather than the whole step: the objectives' hard-negative sampling and
    queues are Python that would break the graph anyway, and the towers are where the time goes."""
    for name in ("visual", "text", "text_encoder", "text_decoder"):
        tower = getattr(model, name, None)
        if tower is not None:
            tower.compile()


def _autocast(cfg: TrainConfig, device: torch.device):
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg, self.env = cfg, distributed.setup(cfg.device)
        self.out = Path(cfg.out)
        # the data first: a missing or unreadable dataset is one line, before a model, a progress bar or a run folder
        self.records = open_records(cfg, self.env.rank, self.env.world)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = build_model(cfg).to(self.env.device).train()
        objectives.check(cfg.objective, self.model)
        if cfg.grad_checkpointing:
            for m in self.model.modules():
                if hasattr(m, "grad_checkpointing"):
                    m.grad_checkpointing = True
        if cfg.compile:
            _compile_towers(self.model)
        self.momentum = None
        spec = objectives.get(cfg.objective)
        if spec.momentum:
            self.momentum = Momentum(self.model, cfg.momentum, cfg.queue_size, cfg.seed,
                                     text_ids=spec.text_queue).to(self.env.device)
        runner = _Runner(self.model, spec.loss)
        self.runner = runner if self.env.world == 1 else DistributedDataParallel(
            runner, find_unused_parameters=spec.unused_parameters)
        self.ctx_holder = runner
        self.optimizer = optim.adamw(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps, cfg.temp_lr_scale)
        self.step = 0
        if resume:
            state.restore(self.out / "checkpoints", self._apply, warn=self.env.main)
        elif self.env.main and state.latest(self.out / "checkpoints"):
            raise ClipBlipError(f"{self.out} already holds checkpoints of a run: resume it with --resume, or pick "
                                "another out=")
        self.log = Logger(self.out, cfg, self.env.main, self.step)

    def _apply(self, saved: dict) -> None:
        """Restore a checkpoint. Each part is replaced whole, so what one that failed halfway left behind is
        overwritten by the checkpoint restored after it."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.momentum is not None:
            self.momentum.load_state_dict(saved["momentum"])
        state.set_rng_state(saved["rng"])
        self.step = saved["step"]

    def _state(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "momentum": self.momentum.state_dict() if self.momentum is not None else None,
                "rng": state.rng_state(), "config": self.cfg.to_dict(),
                "samples_seen": self.step * self.cfg.accum * self.cfg.batch_size}

    def save(self) -> None:
        if self.env.main:
            state.save(self.out / "checkpoints", self.step, self._state(), self.cfg.keep)
        distributed.barrier()

    def _micro_step(self, batch: dict, micro: int) -> dict:
        cfg = self.cfg
        self.ctx_holder.ctx = objectives.Context(
            step=self.step, micro=micro, seed=cfg.seed, momentum=self.momentum,
            alpha=cfg.alpha * min(1.0, (self.step + 1) / max(1, cfg.warmup)), label_smoothing=cfg.label_smoothing)
        last = micro == cfg.accum - 1
        sync = self.runner.no_sync() if self.env.world > 1 and not last else contextlib.nullcontext()
        with sync:
            with _autocast(cfg, self.env.device):
                losses = self.runner(to_device(batch, self.env.device))
            (sum(losses.values()) / cfg.accum).backward()
        return {k: float(v.detach()) for k, v in losses.items()}

    def train_step(self, batches) -> dict:
        cfg = self.cfg
        optim.set_lr(self.optimizer, optim.lr_at(self.step, cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr))
        totals, samples = {}, 0
        for micro in range(cfg.accum):
            batch = next(batches)
            self.log.rejects(batch["skipped"])
            if not batch["size"]:
                raise ClipBlipError("every image of a batch was unreadable; see rejects.jsonl")
            samples += batch["size"]
            for k, v in self._micro_step(batch, micro).items():
                totals[k] = totals.get(k, 0.0) + v / cfg.accum
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _clamp_temperature(self.model)
        self.step += 1
        totals = distributed.mean_over_ranks(totals, self.env.device)
        totals["loss"] = sum(totals.values())
        totals["samples"] = distributed.total(samples, self.env.device)
        return totals

    def run(self) -> Path | None:
        cfg = self.cfg
        spec = objectives.get(cfg.objective)
        collate = Collate(self.model, spec.collate, edits=spec.edits)
        batches = loader(self.records, collate, global_batch=cfg.batch_size, rank=self.env.rank, world=self.env.world,
                         start_batch=self.step * cfg.accum, seed=cfg.seed, workers=cfg.workers)
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            values = self.train_step(batches)
            self.log.step(self.step, values, time.perf_counter() - t0, self.optimizer.param_groups[0]["lr"])
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self.evaluate()
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.steps:
                self.save()
        self.save()
        self.evaluate()
        return self.finish()

    def evaluate(self) -> dict:
        from .evaluate import evaluate

        if not self.env.main:
            return {}
        self.model.eval()
        with torch.no_grad(), _autocast(self.cfg, self.env.device):
            metrics = evaluate(self.model, self.cfg, self.momentum)
        self.model.train()
        self.log.eval(self.step, metrics)
        return metrics

    def finish(self) -> Path | None:
        """The final model in the native format, written beside and renamed into place."""
        path = None
        if self.env.main:
            path = self.out / "model"
            with atomic_path(path) as tmp:
                native.save(self.model, tmp)
        self.log.close()
        distributed.barrier()
        return path


def train(cfg: TrainConfig, resume: bool = False) -> Path | None:
    """Train to cfg.steps (from the newest checkpoint with `resume`); returns the final model's directory."""
    trainer = Trainer(cfg, resume)
    try:
        return trainer.run()
    finally:
        distributed.cleanup()
