"""Vision Transformer: patchify, prepend a class token, add learned positions, pre-norm blocks, final norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig
from ..errors import ClipBlipError
from ..nn import PreNormBlock, run_block


def resample_pos_embed(pos: torch.Tensor, grid: int, prefix: int = 1) -> torch.Tensor:
    """Resample learned positions [prefix + g*g, W] to a `grid` x `grid` patch grid (bicubic, as BLIP and HF do)."""
    old = math.isqrt(pos.shape[0] - prefix)
    if old == grid:
        return pos
    if old * old != pos.shape[0] - prefix:
        raise ValueError(f"positional embedding of {pos.shape[0]} rows is not {prefix} + a square grid")
    patches = pos[prefix:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(pos.dtype)
    return torch.cat([pos[:prefix], patches])


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        w, grid = cfg.width, cfg.image_size // cfg.patch_size
        self.patch_size = cfg.patch_size
        self.patch_embed = nn.Conv2d(3, w, cfg.patch_size, cfg.patch_size, bias=cfg.patch_bias)
        self.cls_token = nn.Parameter(torch.randn(w) * w**-0.5)
        self.pos_embed = nn.Parameter(torch.randn(grid * grid + 1, w) * w**-0.5)
        self.norm_pre = nn.LayerNorm(w, eps=cfg.norm_eps) if cfg.norm_pre else nn.Identity()
        self.blocks = nn.ModuleList(
            PreNormBlock(w, cfg.heads, cfg.mlp_dim, cfg.act, cfg.norm_eps) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(w, eps=cfg.norm_eps)
        self.proj = nn.Linear(w, cfg.output_dim, bias=False) if cfg.output_dim else None
        self.grad_checkpointing = False

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype))
        grid_h, grid_w = x.shape[-2:]
        if grid_h != grid_w:
            raise ClipBlipError(f"expected square images, got a {grid_h}x{grid_w} patch grid; "
                                "preprocess them with model.preprocess")
        x = x.flatten(2).transpose(1, 2)  # [B, N, W]
        cls = self.cls_token.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + resample_pos_embed(self.pos_embed, grid_h).to(x.dtype)
        return self.norm_pre(x)

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """All tokens, normalized: [B, 1 + N, W] (BLIP's cross-attention reads these)."""
        x = self._embed(pixels)
        for block in self.blocks:
            x = run_block(block, x, self.grad_checkpointing)
        return self.norm(x)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The pooled (class-token) feature, projected when the config says so: [B, output_dim or W]. Only the
        class token leaves the last block, so it alone is computed there."""
        x = self._embed(pixels)
        for block in self.blocks[:-1]:
            x = run_block(block, x, self.grad_checkpointing)
        x = self.norm(self.blocks[-1].first_token(x)[:, 0])
        return self.proj(x) if self.proj is not None else x
