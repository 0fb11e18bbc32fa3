"""AdamW with weight-decay groups, and warmup + cosine as a pure function of the step (nothing to restore)."""

from __future__ import annotations

import math

import torch


def no_decay(name: str, p: torch.Tensor) -> bool:
    """open_clip's rule: gains, biases and the temperature are not decayed (every parameter under 2-D)."""
    return p.ndim < 2 or name.endswith("bias") or "logit_scale" in name or name.endswith("temp")


def is_temperature(name: str) -> bool:
    return name == "temp" or name.endswith(".temp")


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.98), eps: float = 1e-6,
          temp_lr_scale: float = 1.0):
    """Groups: decayed weights, the rest, and BLIP's temperature with its own learning-rate scale.

    BLIP learns its ITC temperature (0.07) in linear space at the base rate, so Adam moves it by about lr per
    step: from scratch at lr 1e-3 it reaches its 0.001 floor within ~70 steps (ITC logits x1000) and ITC stalls.
    CLIP learns log(1/T), where a step of lr is a relative change; temp_lr_scale ~ T gives BLIP's the same."""
    decay, keep, temp = [], [], []
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        (temp if is_temperature(name) else keep if no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
              {"params": keep, "weight_decay": 0.0, "lr_scale": 1.0},
              {"params": temp, "weight_decay": 0.0, "lr_scale": temp_lr_scale}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(betas), eps=eps)


def lr_at(step: int, lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Linear warmup from lr/warmup to lr over `warmup` steps, then cosine down to min_lr at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)


@torch.no_grad()
def init_weights(model: torch.nn.Module, std: float = 0.02) -> None:
    """Fresh-model init (BERT's and timm's ViT scheme): linear and embedding weights N(0, std), biases zero,
    LayerNorm gains one. Class and position embeddings keep their constructors' init. PyTorch's defaults
    (N(0, 1) embeddings) would start a tied LM head with logits in the hundreds."""
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv2d)):
            torch.nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if getattr(m, "bias", None) is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.LayerNorm):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
