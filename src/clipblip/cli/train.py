"""`clipblip train`: a preset or config file with key=value overrides, or --resume DIR."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ClipBlipError
from .common import add_common, report


def cmd_train(args) -> int:
    from ..jobs import Skipped
    from ..train import resolve, train
    from ..train.config import TrainConfig, apply_overrides

    if args.resume:
        saved = Path(args.resume) / "train_config.json"
        if not saved.is_file():
            raise ClipBlipError(f"{args.resume} is not a training run (no train_config.json); give the run's out "
                                "directory")
        cfg = TrainConfig.from_dict(apply_overrides(json.loads(saved.read_text()), args.overrides))
        if Path(cfg.out).resolve() != Path(args.resume).resolve():
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "out": args.resume})
    else:
        cfg = resolve(args.preset, args.config, args.overrides)
    path = train(cfg, resume=bool(args.resume))
    if path is None:  # ranks other than 0 write nothing
        return 0
    return report({"model": str(path), "steps": cfg.steps}, Skipped(), args.json,
                   [f"trained {cfg.steps} steps; model in {path} (load it with clipblip.load)"])


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train CLIP or BLIP (any objective; under torchrun for several processes)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings over the preset or file, e.g. "
                   "steps=500 lr=1e-3 model.vision.layers=6 data=train.csv")
    p.add_argument("--preset", help="shapes-clip, shapes-blip, clip-vit-b-16, blip-base-pretrain")
    p.add_argument("--config", help="a JSON training config")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest complete checkpoint")
    add_common(p, model=None)
    p.set_defaults(run=cmd_train, grad=True)
