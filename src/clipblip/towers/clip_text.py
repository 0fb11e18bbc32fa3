"""CLIP's causal text transformer, pooled at the explicit end-of-text position.

Causal attention means no token before the EOT sees what follows it, so the padding after the longest EOT in a
batch is cut before the blocks run: short captions cost a fraction of the 77-token context.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TextConfig
from ..errors import ClipBlipError
from ..nn import PreNormBlock, run_block


class TextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.eot_id = cfg.eot_id
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.randn(cfg.context_length, cfg.width) * 0.01)
        self.blocks = nn.ModuleList(
            PreNormBlock(cfg.width, cfg.heads, cfg.mlp_dim, cfg.act, cfg.norm_eps) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.proj = nn.Linear(cfg.width, cfg.output_dim, bias=False)
        self.grad_checkpointing = False

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        is_eot = tokens == self.eot_id
        if not bool(is_eot.any(dim=1).all()):
            raise ClipBlipError(f"a text row has no end-of-text token (id {self.eot_id}); "
                                "make token ids with model.tokenize(texts)")
        return is_eot.int().argmax(dim=1)  # the first EOT of each row

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.pos_embed.shape[0]:
            raise ClipBlipError(f"texts are {tokens.shape[1]} tokens long; this model reads at most "
                                f"{self.pos_embed.shape[0]}: tokenize with model.tokenize (it truncates)")
        eot = self.eot_positions(tokens)
        tokens = tokens[:, : int(eot.max()) + 1]
        x = self.token_embed(tokens) + self.pos_embed[: tokens.shape[1]]
        for block in self.blocks:
            x = run_block(block, x, self.grad_checkpointing, causal=True)
        x = self.norm(x[torch.arange(x.shape[0], device=x.device), eot])
        return self.proj(x)
