"""The training configuration, its presets, and `key=value` overrides.

A run is described by one TrainConfig: a preset, a JSON file, or either with overrides such as `lr=1e-3` or
`model.vision.layers=6` (dotted keys reach into the model config; values are read as JSON when they parse,
else as strings). The resolved config is saved beside the run's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..config import matches, type_name
from ..errors import ClipBlipError


@dataclass
class TrainConfig:
    objective: str = "clip"            # see train.objectives.OBJECTIVES (clip, blip-pretrain, retrieval, ...)
    model: dict = field(default_factory=dict)  # a model config (config.json layout) for a fresh model ...
    init: str | None = None            # ... or a checkpoint to start from (anything clipblip.load reads)
    init_vision: str | None = None     # a checkpoint whose image tower starts a fresh model's (BLIP's pretrained ViT)
    data: str = "shapes"               # "shapes" (generated in memory) or a dataset path (see clipblip.data)
    data_format: str | None = None
    image_root: str | None = None
    split: str | None = None
    shapes: dict = field(default_factory=lambda: {"seed": 0, "n": 20000, "size": 64})
    steps: int = 1000
    batch_size: int = 64               # global batch of one forward pass, split over ranks
    accum: int = 1                     # forward passes per optimizer step
    lr: float = 5e-4
    min_lr: float = 0.0
    warmup: int = 100
    weight_decay: float = 0.2
    betas: tuple = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0             # 0: off
    momentum: float = 0.995            # BLIP: momentum encoder EMA
    queue_size: int = 4096             # BLIP: ITC feature queue
    alpha: float = 0.4                 # BLIP: distillation weight, ramped up over the warmup
    label_smoothing: float = 0.1       # BLIP: LM loss
    temp_lr_scale: float = 1.0         # BLIP: learning-rate factor of the ITC temperature (see optim.adamw)
    grad_checkpointing: bool = False
    compile: bool = False              # torch.compile each tower (the first steps wait for the compiler)
    precision: str = "auto"            # auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16
    device: str = "auto"
    workers: int = 0                   # DataLoader worker processes
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0                # 0: only at the end
    eval_n: int = 256                  # Shapes val images per evaluation (0: no evaluation)
    save_every: int = 100
    keep: int = 2
    tensorboard: bool = False
    progress: bool = True
    out: str = "runs/train"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Settings from JSON (a file, overrides), each checked against its field's type before anything is made."""
        if not isinstance(d, dict):
            raise ClipBlipError(f"a training config is a JSON object of settings, not a {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(d) - set(hints))
        if unknown:
            raise ClipBlipError(f"unknown training settings {unknown}; known: {sorted(hints)}")
        for key, value in d.items():
            if not matches(value, hints[key]):
                shown = json.dumps(value)[:60]
                raise ClipBlipError(f"training setting {key}={shown}: expected {type_name(hints[key])}")
        return cls(**d)


def _tiny_vision() -> dict:
    return {"arch": "vit", "image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "heads": 4,
            "mlp_dim": 512, "act": "gelu", "norm_eps": 1e-6}


def _shapes_clip_model() -> dict:
    from ..data.shapes import VOCAB
    from ..text.wordlevel import CLIP_SPECIALS, clip_ids, full_vocab

    vocab = full_vocab(VOCAB, CLIP_SPECIALS)
    return {"family": "clip", "embed_dim": 128,
            "vision": {**_tiny_vision(), "output_dim": 128},
            "text": {"context_length": 32, "width": 128, "heads": 4, "layers": 4, "mlp_dim": 512, "act": "gelu",
                     "output_dim": 128, "vocab": list(vocab), **clip_ids(vocab)},
            "image": {"size": 64, "resize": "squash", "mean": [0.5] * 3, "std": [0.5] * 3}}


def _shapes_blip_model() -> dict:
    from ..data.shapes import VOCAB
    from ..text.wordlevel import BERT_SPECIALS, bert_ids, full_vocab

    vocab = full_vocab(VOCAB, BERT_SPECIALS)
    return {"family": "blip", "embed_dim": 128, "tie_decoder": True,
            # the same tower as shapes-clip's (ln_pre, no patch bias), so it can start from it
            "vision": {**_tiny_vision(), "norm_pre": True, "patch_bias": False, "output_dim": None},
            "text": {"width": 128, "heads": 4, "layers": 4, "mlp_dim": 512, "max_positions": 32, "max_length": 32,
                     "cross_width": 128, "norm_eps": 1e-12, "vocab": list(vocab), **bert_ids(vocab)},
            "image": {"size": 64, "resize": "squash", "mean": [0.5] * 3, "std": [0.5] * 3}}


_SHAPES_DATA = {"seed": 0, "n": 500000, "size": 64}  # ~2 epochs of 4000 x 256: nearly every scene new


def _preset_shapes_clip() -> dict:
    return {"objective": "clip", "model": _shapes_clip_model(), "shapes": _SHAPES_DATA, "steps": 6000,
            "batch_size": 256, "lr": 1e-3, "warmup": 300, "weight_decay": 0.1, "eval_every": 1000,
            "save_every": 250, "out": "runs/shapes-clip"}


def _preset_shapes_blip() -> dict:
    """BLIP starts its ViT from an ImageNet model; here from the embedded shapes-clip's image tower. From
    scratch, BLIP's momentum-key ITC barely moves: the keys (an EMA of a random network) are all alike."""
    return {"objective": "blip-pretrain", "model": _shapes_blip_model(), "init_vision": "shapes-clip",
            "shapes": _SHAPES_DATA, "steps": 3000,
            "batch_size": 256, "lr": 1e-3, "warmup": 300, "weight_decay": 0.05, "queue_size": 4096,
            "temp_lr_scale": 0.05,
            "eval_every": 500, "save_every": 250, "out": "runs/shapes-blip"}


def _preset_shapes_blip_vqa() -> dict:
    """VQA fine-tuning of the pretrained shapes-blip (BLIP fine-tunes a separate VQA model the same way)."""
    return {"objective": "vqa", "init": "runs/shapes-blip/model", "shapes": _SHAPES_DATA, "steps": 1500,
            "batch_size": 256, "lr": 5e-4, "warmup": 60, "weight_decay": 0.05, "eval_every": 500,
            "save_every": 250, "out": "runs/shapes-blip-vqa"}


# ViT-B sized runs as the papers did them; documented, not run here (they need GPUs and a real corpus).
def _preset_clip_vit_b_16() -> dict:
    return {"objective": "clip", "init": None, "model": {"family": "clip", "vision": {"patch_size": 16, "act": "gelu"},
                                                          "text": {"act": "gelu"}},
            "data": "shards/{000000..004000}.tar", "steps": 100000, "batch_size": 4096, "lr": 5e-4, "warmup": 2000,
            "weight_decay": 0.2, "grad_checkpointing": True, "workers": 8, "save_every": 2000,
            "out": "runs/clip-vit-b-16"}


def _preset_blip_base_pretrain() -> dict:
    return {"objective": "blip-pretrain", "model": {"family": "blip", "vision": {"image_size": 224},
                                                     "image": {"size": 224, "resize": "squash"},
                                                     "tie_decoder": True},
            "data": "shards/{000000..001400}.tar", "steps": 200000, "batch_size": 2880, "lr": 2e-4,
            "warmup": 3000, "weight_decay": 0.05, "queue_size": 57600, "momentum": 0.995, "alpha": 0.4,
            "grad_checkpointing": True, "workers": 8, "save_every": 2000, "out": "runs/blip-base"}


PRESETS = {"shapes-clip": _preset_shapes_clip, "shapes-blip": _preset_shapes_blip,
           "shapes-blip-vqa": _preset_shapes_blip_vqa,
           "clip-vit-b-16": _preset_clip_vit_b_16, "blip-base-pretrain": _preset_blip_base_pretrain}


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_overrides(d: dict, overrides) -> dict:
    """`key=value` strings applied to a config dict; dotted keys reach into nested dicts."""
    d = json.loads(json.dumps(d))
    for item in overrides or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ClipBlipError(f"override {item!r} is not key=value (e.g. lr=1e-3 or model.vision.layers=6)")
        *path, last = key.split(".")
        node = d
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ClipBlipError(f"override {item!r}: {part} is not a group of settings")
        node[last] = _value(text)
    return d


def resolve(preset: str | None = None, file: str | None = None, overrides=()) -> TrainConfig:
    if preset and file:
        raise ClipBlipError("give a preset or a config file, not both")
    if preset:
        if preset not in PRESETS:
            raise ClipBlipError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        d = PRESETS[preset]()
    elif file:
        try:
            d = json.loads(Path(file).read_text())
        except (OSError, ValueError) as e:
            raise ClipBlipError(f"cannot read training config {file}: {e}") from None
    else:
        d = {}
    return TrainConfig.from_dict(apply_overrides(d, overrides))
