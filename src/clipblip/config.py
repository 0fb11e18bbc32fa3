"""Frozen model configs. Everything that changes the numbers (activation, norm eps, pooling and special-token ids,
preprocessing) is an explicit field, saved as config.json beside the weights; nothing is guessed at load time."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ClipBlipError
from .image import Preprocess


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


def _build(cls, data: dict):
    """Build a (nested) dataclass from JSON data: lists become tuples, unknown keys are an error."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ClipBlipError(f"{cls.__name__}: unknown config field(s) {sorted(unknown)}; is this a clipblip config?")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            value = _merge(default, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _merge(default, data: dict):
    """A nested group from JSON: the given fields over the field's default instance (so a partial group keeps
    e.g. BLIP's vision defaults, which are not VisionConfig's)."""
    if not isinstance(data, dict):
        raise ClipBlipError(f"{type(default).__name__}: expected a group of settings, got {data!r}")
    built = _build(type(default), data)
    return dataclasses.replace(default, **{k: getattr(built, k) for k in data})


def from_dict(data: dict):
    family = data.get("family")
    if family not in FAMILIES:
        raise ClipBlipError(f"config.json has family {family!r}; known families: {sorted(FAMILIES)}")
    return _build(FAMILIES[family], data)


def save(cfg, directory: Path) -> None:
    (Path(directory) / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
