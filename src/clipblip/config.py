"""Frozen model configs. Everything that changes the numbers (activation, norm eps, pooling and special-token ids,
preprocessing) is an explicit field, saved as config.json beside the weights; nothing is guessed at load time."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ClipBlipError
from .image import Preprocess
from .nn.mlp import ACTIVATIONS


@dataclass(frozen=True)
class VisionConfig:
    arch: str = "vit"                 # "vit" | "resnet"
    image_size: int = 224
    width: int = 768                  # ViT width, or the ResNet stem width (64 for RN50)
    layers: int | tuple[int, ...] = 12  # ViT depth, or blocks per ResNet stage
    heads: int = 12                   # ViT heads, or attention-pool heads
    patch_size: int = 32
    mlp_dim: int = 3072
    act: str = "quick_gelu"           # "quick_gelu" | "gelu"
    norm_eps: float = 1e-5
    norm_pre: bool = True             # OpenAI's ln_pre before the blocks; BLIP has none
    patch_bias: bool = False          # OpenAI's conv1 has no bias; BLIP's patch embedding has one
    output_dim: int | None = 512      # projection to the joint space; None: the tower returns width-d features


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 49408
    context_length: int = 77
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_dim: int = 2048
    act: str = "quick_gelu"
    norm_eps: float = 1e-5
    output_dim: int = 512
    sot_id: int = 49406
    eot_id: int = 49407               # features are pooled at the first position holding this id
    pad_id: int = 0                   # what the tokenizer pads with (OpenAI: 0; HF: the eot id)
    vocab: tuple[str, ...] = ()       # a closed word vocabulary (text/wordlevel.py); empty: OpenAI's BPE


@dataclass(frozen=True)
class ClipConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    image: Preprocess = field(default_factory=Preprocess)  # saved with the weights
    embed_dim: int = 512
    init_logit_scale: float = 2.6592  # log(1 / 0.07)
    family: str = "clip"


@dataclass(frozen=True)
class BertConfig:
    """BLIP's text side: BERT-style post-norm blocks, cross-attention to the image in every block."""
    vocab_size: int = 30524           # BERT uncased + [DEC] + [ENC]
    width: int = 768
    heads: int = 12
    layers: int = 12
    mlp_dim: int = 3072
    max_positions: int = 512
    act: str = "gelu"
    norm_eps: float = 1e-12
    cross_width: int = 768            # the image tower's width
    max_length: int = 35              # tokenizer truncation (BLIP's captions and questions)
    pad_id: int = 0
    cls_id: int = 101                 # starts unimodal text (ITC)
    sep_id: int = 102                 # ends every text; generation stops at it
    dec_id: int = 30522               # starts decoder input
    enc_id: int = 30523               # starts image-grounded encoder input (ITM)
    vocab: tuple[str, ...] = ()       # a closed word vocabulary (text/wordlevel.py); empty: BERT's WordPiece


BLIP_PARTS = ("encoder", "decoder", "itc", "itm")


@dataclass(frozen=True)
class BlipConfig:
    vision: VisionConfig = field(default_factory=lambda: VisionConfig(
        image_size=384, patch_size=16, act="gelu", norm_eps=1e-6, norm_pre=False, patch_bias=True, output_dim=None))
    text: BertConfig = field(default_factory=BertConfig)
    image: Preprocess = field(default_factory=lambda: Preprocess(size=384, resize="squash"))
    embed_dim: int = 256              # ITC projections
    parts: tuple[str, ...] = BLIP_PARTS  # which heads the checkpoint has (captioning files: decoder only, ...)
    tie_decoder: bool = False         # pretraining shares all decoder weights but self-attention with the encoder
    init_temp: float = 0.07
    family: str = "blip"


FAMILIES = {"clip": ClipConfig, "blip": BlipConfig}


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _build(cls, data: dict, path: str = ""):
    """Build a (nested) dataclass from JSON data: lists become tuples, unknown keys and wrong types are an error
    naming the field (checked before construction, so no __post_init__ meets a value of the wrong type)."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ClipBlipError(f"{cls.__name__}: unknown config field(s) {sorted(unknown)[:8]}; is this a clipblip "
                            "config?")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            value = _merge(default, value, f"{path}{name}")
        else:
            _check_type(f"{path}{name}", value, hints[name])
            if isinstance(value, list):
                value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _merge(default, data: dict, path: str):
    """A nested group from JSON: the given fields over the field's default instance (so a partial group keeps
    e.g. BLIP's vision defaults, which are not VisionConfig's)."""
    if not isinstance(data, dict):
        raise ClipBlipError(f"config field {path}: expected a group of settings (a JSON object), got {_show(data)}")
    built = _build(type(default), data, f"{path}.")
    return dataclasses.replace(default, **{k: getattr(built, k) for k in data})


def from_dict(data: dict):
    """A config from JSON data, checked (types, ranges, size: see `validate`) before anything is built from it."""
    if not isinstance(data, dict):
        raise ClipBlipError(f"a config must be a JSON object of settings, got {_show(data)}")
    family = data.get("family")
    if family not in FAMILIES:
        raise ClipBlipError(f"config field family: unknown model family {repr(family)[:40]}; known: {sorted(FAMILIES)}")
    return validate(_build(FAMILIES[family], data))


# ---- validation: a config comes from a file, so it is checked before a model is built from it --------------------

# Bounds per field name, generous around every release in the catalog (ViT-bigG-14: width 1664, 48 layers, MLP 8192;
# RN50x64: 36 blocks in a stage) and tight enough that a hostile config fails here, in microseconds, rather than
# after minutes of building a million layers.
_INT_RANGES = {
    "image_size": (1, 4096), "size": (1, 4096), "patch_size": (0, 1024), "width": (1, 16384), "heads": (1, 1024),
    "layers": (1, 512), "mlp_dim": (0, 65536), "output_dim": (1, 16384), "embed_dim": (1, 16384),
    "vocab_size": (1, 1 << 21), "context_length": (1, 65536), "max_positions": (1, 65536),
    "max_length": (1, 65536), "cross_width": (1, 16384),
}
_TOKEN_IDS = ("sot_id", "eot_id", "pad_id", "cls_id", "sep_id", "dec_id", "enc_id")
_CHOICES = {"arch": ("vit", "resnet"), "act": tuple(ACTIVATIONS), "family": tuple(FAMILIES)}
# Twice ViT-bigG-14 (2.54e9), the largest release in the catalog: about 32 GB of fp32 weights.
MAX_PARAMS = 5_000_000_000


def validate(cfg):
    """`cfg`, after checking every field's type and range, the shape rules the towers rely on, and the estimated
    parameter count against MAX_PARAMS. Raises ClipBlipError naming the first bad field."""
    _check_fields(cfg, "")
    _check_vision(cfg.vision)
    _check_text(cfg.text)
    if cfg.family == "blip" and (not cfg.parts or set(cfg.parts) - set(BLIP_PARTS)):
        raise ClipBlipError(f"config field parts: {_show(cfg.parts)} must be some of {list(BLIP_PARTS)}")
    params = estimate_params(cfg)
    if params > MAX_PARAMS:
        raise ClipBlipError(f"the config describes a model of about {params:.3g} parameters, over the "
                            f"{MAX_PARAMS:.3g} clipblip builds; check its width, layers and vocab_size")
    return cfg


def _show(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def matches(value, hint) -> bool:
    """Whether a JSON value fits a type hint: exact types (a bool is no int), a float may be written as an int, a
    tuple as a list, unions arm by arm."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(matches(value, arm) for arm in args)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
    if hint is float:  # JSON writes 1.0 as 1
        return type(value) in (int, float) and math.isfinite(value)
    if hint is type(None):
        return value is None
    if hint is tuple:
        return isinstance(value, (list, tuple))
    return type(value) is hint  # exact: a bool is not an int here


def type_name(hint) -> str:
    return hint.__name__ if isinstance(hint, type) and not typing.get_args(hint) else str(hint)


def _check_type(path: str, value, hint) -> None:
    if not matches(value, hint):
        raise ClipBlipError(f"config field {path}: expected {type_name(hint)}, got {_show(value)}")


def _check_fields(obj, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        path, value = f"{prefix}{f.name}", getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_fields(value, f"{path}.")
            continue
        _check_type(path, value, hints[f.name])
        low, high = _INT_RANGES.get(f.name, (0, 1 << 31))
        for v in value if isinstance(value, tuple) else (value,):
            if type(v) is int and not low <= v <= high:
                raise ClipBlipError(f"config field {path}: {v} is outside [{low}, {high}]")
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise ClipBlipError(f"config field {path}: {_show(value)} is not one of {list(_CHOICES[f.name])}")
        if f.name == "norm_eps" and not 0 < value < 1:
            raise ClipBlipError(f"config field {path}: {value} is not in (0, 1)")


def _check_vision(v: VisionConfig) -> None:
    if v.arch == "resnet":
        if not (isinstance(v.layers, tuple) and len(v.layers) == 4):
            raise ClipBlipError(f"config field vision.layers: a ResNet has 4 stages, got {_show(v.layers)}")
        if v.width % 2 or (v.width * 32) % v.heads:
            raise ClipBlipError(f"config field vision.width: {v.width} must be even and {v.width} * 32 divisible "
                                f"by vision.heads {v.heads}")
        return
    if not isinstance(v.layers, int):
        raise ClipBlipError(f"config field vision.layers: a ViT has one depth (an int), got {_show(v.layers)}")
    if not 1 <= v.patch_size <= v.image_size:
        raise ClipBlipError(f"config field vision.patch_size: {v.patch_size} must be in [1, image_size]")
    _check_heads("vision", v.width, v.heads)


def _check_text(t) -> None:
    _check_heads("text", t.width, t.heads)
    for name in _TOKEN_IDS:
        if hasattr(t, name) and getattr(t, name) >= t.vocab_size:
            raise ClipBlipError(f"config field text.{name}: {getattr(t, name)} is not below vocab_size "
                                f"{t.vocab_size}")
    if len(t.vocab) > t.vocab_size:
        raise ClipBlipError(f"config field text.vocab: {len(t.vocab)} words, more than vocab_size {t.vocab_size}")


def _check_heads(tower: str, width: int, heads: int) -> None:
    if width % heads:
        raise ClipBlipError(f"config field {tower}.heads: {heads} does not divide {tower}.width {width}")


def _blocks(width: int, mlp: int, layers: int, cross: int = 0) -> int:
    """Transformer blocks: attention (4 w^2), MLP (2 w m), cross-attention (2 w^2 + 2 w c), biases and norms."""
    per = 4 * width * width + 2 * width * mlp + 9 * width + mlp
    if cross:
        per += 2 * width * width + 2 * width * cross + 6 * width
    return layers * per


def _vision_params(v: VisionConfig) -> int:
    if v.arch == "resnet":
        grid, dim = v.image_size // 32, v.width * 32
        stages = sum(blocks * 17 * (v.width * 2**i) ** 2 for i, blocks in enumerate(v.layers))
        return stages + (grid * grid + 1) * dim + 3 * dim * dim + dim * (v.output_dim or dim)
    grid = v.image_size // v.patch_size
    return (3 * v.patch_size**2 * v.width + (grid * grid + 1) * v.width + _blocks(v.width, v.mlp_dim, v.layers)
            + v.width * (v.output_dim or 0))


def estimate_params(cfg) -> int:
    """The parameter count of the model `cfg` describes, from the config alone (within a few percent for the
    releases in the catalog): what MAX_PARAMS is checked against before anything is allocated."""
    t = cfg.text
    if cfg.family == "clip":
        text = (t.vocab_size + t.context_length) * t.width + _blocks(t.width, t.mlp_dim, t.layers)
        return _vision_params(cfg.vision) + text + t.width * t.output_dim
    stacks = ("decoder" in cfg.parts) + bool(set(cfg.parts) & {"encoder", "itc", "itm"})
    bert = (t.vocab_size + t.max_positions) * t.width + _blocks(t.width, t.mlp_dim, t.layers, t.cross_width)
    return _vision_params(cfg.vision) + stacks * bert + t.width * t.width + t.vocab_size  # LM head: tied embedding


def save(cfg, directory: Path) -> None:
    (Path(directory) / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
