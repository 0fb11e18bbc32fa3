"""Transformer blocks. Pre-norm (CLIP, ViT): x + f(norm(x)). Post-norm (BERT, BLIP's text side): norm(x + f(x)),
with an optional cross-attention sublayer between self-attention and the MLP."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import Attention, CrossAttention, KVCache
from .mlp import MLP


class PreNormBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, act: str, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, act)

    def forward(self, x, mask=None, causal: bool = False):
        x = x + self.attn(self.norm1(x), mask=mask, causal=causal)
        return x + self.mlp(self.norm2(x))

    def first_token(self, x):
        """The block's output at the first position only (see `Attention.first_token`): [B, 1, W]."""
        first = x[:, :1] + self.attn.first_token(self.norm1(x))
        return first + self.mlp(self.norm2(first))


class PostNormBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, act: str, eps: float, cross_dim: int | None = None):
        super().__init__()
        self.attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.xattn = CrossAttention(dim, heads, cross_dim) if cross_dim else None
        self.norm_x = nn.LayerNorm(dim, eps=eps) if cross_dim else None
        self.mlp = MLP(dim, mlp_dim, act)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x, mask=None, causal: bool = False, cache: KVCache | None = None, kv=None, kv_mask=None):
        """`kv`: this block's precomputed image keys/values (`xattn.context_kv`); None skips cross-attention."""
        x = self.norm1(x + self.attn(x, mask=mask, causal=causal, cache=cache))
        if kv is not None:
            x = self.norm_x(x + self.xattn(x, kv=kv, mask=kv_mask))
        return self.norm2(x + self.mlp(x))


def run_block(block: nn.Module, x, checkpointing: bool, **kwargs):
    """block(x, **kwargs); with `checkpointing` (and autograd on) its activations are recomputed in the backward
    pass instead of kept: less memory for about a third more compute."""
    if checkpointing and torch.is_grad_enabled():
        return checkpoint(block, x, use_reentrant=False, **kwargs)
    return block(x, **kwargs)
