"""Multi-head attention over `scaled_dot_product_attention`, shared by every tower.

Self-attention projects q, k, v with one fused matmul. Cross-attention splits the projection: the queries come from
the text, the keys/values from the image, and those are computed once per image (`context_kv`) and reused for every
decoding step and every beam.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys/values of the tokens decoded so far, [B, H, T, d] each, grown one step at a time."""

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.k, self.v = k, v
        return k, v

    def select(self, index: torch.Tensor) -> None:
        """Keep the rows `index` (beam search reorders hypotheses)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


def padding_mask(keep: torch.Tensor, q_len: int, causal: bool, past: int = 0) -> torch.Tensor:
    """Boolean SDPA mask [B, 1, Lq, Lk] from a keep-mask [B, Lk] (True = a real token), optionally causal."""
    mask = keep[:, None, None, :].bool()
    if causal:
        k_len = keep.shape[1]
        rows = torch.arange(past, past + q_len, device=keep.device)[:, None]
        mask = mask & (torch.arange(k_len, device=keep.device)[None, :] <= rows)
    return mask


class _Heads(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads

    def split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    @staticmethod
    def merge(x: torch.Tensor) -> torch.Tensor:  # [B, H, L, d] -> [B, L, H*d]
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)


class Attention(_Heads):
    """Self-attention. `mask` is an SDPA mask (see `padding_mask`); `causal` without a mask uses the fused kernel."""

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__(dim, heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, mask=None, causal: bool = False, cache: KVCache | None = None):
        q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
        past = 0
        if cache is not None:
            past = len(cache)
            k, v = cache.append(k, v)
        if causal and mask is None and past:
            mask = padding_mask(torch.ones(x.shape[0], past + x.shape[1], device=x.device), x.shape[1], True, past)
        is_causal = causal and mask is None and q.shape[2] > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.proj(self.merge(out))

    def first_token(self, x):
        """The output at the first position only, attending to all of `x` (a pooled model's last block needs
        nothing else): the keys/values are computed for every token, the rest for one."""
        if not isinstance(self.qkv, nn.Linear):  # int8: a quantized layer has no float weight to split
            q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
            return self.proj(self.merge(F.scaled_dot_product_attention(q[:, :, :1], k, v)))
        w_q, w_kv = self.qkv.weight.split([x.shape[-1], 2 * x.shape[-1]])
        b_q, b_kv = self.qkv.bias.split([x.shape[-1], 2 * x.shape[-1]]) if self.qkv.bias is not None else (None, None)
        q = self.split(F.linear(x[:, :1], w_q, b_q))
        k, v = (self.split(t) for t in F.linear(x, w_kv, b_kv).chunk(2, dim=-1))
        return self.proj(self.merge(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(_Heads):
    """Queries from `x`, keys/values from a context (image tokens); `out_dim` lets CLIP's attention pool project."""

    def __init__(self, dim: int, heads: int, kv_dim: int, out_dim: int | None = None, bias: bool = True):
        super().__init__(dim, heads)
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(kv_dim, 2 * dim, bias=bias)
        self.proj = nn.Linear(dim, out_dim or dim, bias=bias)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(context).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x, context=None, kv=None, mask=None):
        """Pass `context` [B, N, kv_dim], or its precomputed `kv` from `context_kv`.

        When `x` holds several rows per context (beams), its batch is a multiple of the context's: those rows are
        folded into the query length so that each image's keys/values are used as they are, never repeated.
        """
        k, v = kv if kv is not None else self.context_kv(context)
        b, n, _ = x.shape
        per = b // k.shape[0]
        q = self.split(self.q(x).reshape(k.shape[0], per * n, -1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(self.merge(out).reshape(b, n, -1))
