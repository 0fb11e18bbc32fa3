"""open_clip checkpoints: the OpenAI key layout, possibly wrapped, plus a model config (open_clip_config.json or
an architecture name), because the activation (GELU for LAION models, QuickGELU for OpenAI's) and the head counts
of some models are not in the tensor shapes."""

from __future__ import annotations

import dataclasses

from ..config import ClipConfig, TextConfig, VisionConfig
from ..errors import ClipBlipError
from ..image import Preprocess
from .common import StateDict
from .openai import infer_config

# open_clip features our CLIP does not implement; a config that turns one on is refused, not half-loaded.
_UNSUPPORTED = {
    "vision_cfg": {"timm_model_name", "attentional_pool", "attn_pooler_queries", "final_ln_after_pool",
                   "output_tokens", "ls_init_value", "act_kwargs", "norm_kwargs", "pos_embed_type", "proj_type"},
    "text_cfg": {"hf_model_name", "embed_cls", "ls_init_value", "no_causal_mask", "proj_type", "proj_bias",
                 "act_kwargs", "norm_kwargs", "output_tokens"},
}
_DEFAULT_POOL = {"vision_cfg": ("pool_type", "tok"), "text_cfg": ("pool_type", "argmax")}


def unwrap(obj) -> StateDict:
    """Strip training-checkpoint wrapping: {'state_dict': ...} (open_clip), {'model': ...} (BLIP), and DDP's
    'module.' prefix."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    sd = obj
    if not isinstance(sd, dict):
        raise ClipBlipError("the file holds no state dict (expected a dict of tensors)")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def is_custom_text_layout(sd: StateDict) -> bool:
    return any(k.startswith(("text.transformer.", "visual.trunk.")) for k in sd)


def _check_supported(model_cfg: dict) -> None:
    for part, keys in _UNSUPPORTED.items():
        cfg = model_cfg.get(part, {})
        used = sorted(k for k in keys & set(cfg) if cfg[k] not in (None, False, 0, {}))
        name, default = _DEFAULT_POOL[part]
        if cfg.get(name, default) != default:
            used.append(f"{name}={cfg[name]}")
        if used:
            raise ClipBlipError(f"this open_clip model uses {part} options clipblip does not implement: {used}")


def config_from_open_clip(model_cfg: dict, preprocess: dict | None = None) -> ClipConfig:
    """Our config from an open_clip model config (the `model_cfg` of open_clip_config.json)."""
    _check_supported(model_cfg)
    act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    v, t, embed = model_cfg["vision_cfg"], model_cfg["text_cfg"], model_cfg["embed_dim"]
    head_width = v.get("head_width", 64)
    if isinstance(v["layers"], (list, tuple)):
        vision = VisionConfig(arch="resnet", image_size=v["image_size"], width=v.get("width", 64),
                              layers=tuple(v["layers"]), heads=v.get("width", 64) * 32 // head_width,
                              patch_size=0, mlp_dim=0, act=act, output_dim=embed)
    else:
        width = v["width"]
        vision = VisionConfig(arch="vit", image_size=v["image_size"], width=width, layers=v["layers"],
                              heads=width // head_width, patch_size=v["patch_size"],
                              mlp_dim=int(width * v.get("mlp_ratio", 4.0)), act=act,
                              norm_pre=not v.get("no_ln_pre", False), output_dim=embed)
    width = t.get("width", 512)
    text = TextConfig(vocab_size=t.get("vocab_size", 49408), context_length=t.get("context_length", 77),
                      width=width, heads=t.get("heads", 8), layers=t.get("layers", 12),
                      mlp_dim=int(width * t.get("mlp_ratio", 4.0)), act=act, output_dim=embed,
                      pad_id=t.get("pad_id", 0))
    image = Preprocess(size=vision.image_size)
    if preprocess:
        image = Preprocess(size=vision.image_size, mean=tuple(preprocess.get("mean", image.mean)),
                            std=tuple(preprocess.get("std", image.std)),
                            interpolation=preprocess.get("interpolation", "bicubic"),
                            resize=preprocess.get("resize", "squash" if preprocess.get("resize_mode") == "squash"
                                                  else "shortest"))
    return ClipConfig(vision=vision, text=text, image=image, embed_dim=embed)


def check_shapes(cfg: ClipConfig, sd: StateDict) -> None:
    """The named config must describe these weights: compare it with what the shapes say (image size aside,
    since positions are resampled to the configured size)."""
    seen = infer_config(sd, act=cfg.text.act, vision_heads=cfg.vision.heads, text_heads=cfg.text.heads)
    diffs = []
    for part in ("vision", "text"):
        want, got = getattr(cfg, part), getattr(seen, part)
        for f in dataclasses.fields(want):
            if f.name in ("image_size", "pad_id", "sot_id", "eot_id", "norm_pre", "norm_eps", "patch_bias"):
                continue
            if getattr(want, f.name) != getattr(got, f.name):
                diffs.append(f"{part}.{f.name}: config {getattr(want, f.name)} vs weights {getattr(got, f.name)}")
    if diffs:
        raise ClipBlipError("the architecture does not match the weights: " + "; ".join(diffs))
