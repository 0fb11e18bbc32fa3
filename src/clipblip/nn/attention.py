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
    """Keys/values of the tokens decoded so far: buffers [B, H, capacity, d] (the dtype and device of the first
    keys) allocated at the first `append` and filled slot by slot, so a step copies only its own keys, never the
    past. `capacity` (or `reserve`) sizes them up front, e.g. prompt + new tokens; a step beyond it doubles them,
    so a caller that knows no length still works. `append` returns views of the filled prefix: attention sees
    exactly the tokens so far, with the numerics of contiguous keys."""

    def __init__(self, capacity: int = 0):
        self.capacity = capacity
        self.length = 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.length

    def reserve(self, capacity: int) -> None:
        """Room for `capacity` tokens: a size hint before the first append, a resize after it."""
        self.capacity = max(self.capacity, capacity)
        if self.k is not None and self.k.shape[2] < capacity:
            self._resize(capacity)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        if self.k is None:
            b, h, _, d = k.shape
            self.k = k.new_empty(b, h, max(self.capacity, end), d)
            self.v = v.new_empty(b, h, max(self.capacity, end), v.shape[3])
        elif end > self.k.shape[2]:
            self._resize(max(end, 2 * self.k.shape[2]))
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _resize(self, capacity: int) -> None:
        n = self.length
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:2], capacity, old.shape[3])
            new[:, :, :n] = old[:, :, :n]
            setattr(self, name, new)

    def select(self, index: torch.Tensor) -> None:
        """Keep the rows `index` ([B]: beam search reorders hypotheses), in place, the filled slots only."""
        n = self.length
        if n:
            self.k[:, :, :n] = self.k[:, :, :n].index_select(0, index)
            self.v[:, :, :n] = self.v[:, :, :n].index_select(0, index)


class StaticKVCache(KVCache):
    """A cache whose shapes and addresses never change, as a captured CUDA graph needs: buffers [B, H, capacity, d]
    allocated here; `append` writes at the slot(s) held in the tensor `position` (shared by every block and set in
    place between steps, so one graph serves every position) and returns the whole buffers, so the caller must mask
    the slots not filled yet (see `TextDecoder`). Those hold zeros, not garbage, because a masked NaN still poisons
    attention (its weight is 0, and 0 * NaN is NaN). `len` stays 0: the position lives on the device."""

    def __init__(self, rows: int, heads: int, capacity: int, head_dim: int, position: torch.Tensor,
                 dtype: torch.dtype):
        super().__init__(capacity)
        self.k = torch.zeros(rows, heads, capacity, head_dim, dtype=dtype, device=position.device)
        self.v = torch.zeros_like(self.k)
        self.position = position

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k.index_copy_(2, self.position, k)
        self.v.index_copy_(2, self.position, v)
        return self.k, self.v

    def select(self, index: torch.Tensor) -> None:
        self.k.copy_(self.k.index_select(0, index))
        self.v.copy_(self.v.index_select(0, index))


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
            k, v = cache.append(k, v)  # a StaticKVCache gives its whole buffers: the caller's `mask` covers them
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
