"""CLIP: an image tower and a causal text tower projected into one space, compared by a learned temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ClipConfig
from ..towers import ModifiedResNet, TextTransformer, VisionTransformer
from .carries import CarriesPreprocess


class CLIP(CarriesPreprocess, nn.Module):
    def __init__(self, cfg: ClipConfig):
        super().__init__()
        self.config = cfg
        self.visual = ModifiedResNet(cfg.vision) if cfg.vision.arch == "resnet" else VisionTransformer(cfg.vision)
        self.text = TextTransformer(cfg.text)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self._tokenizer = None

    # The tokenizer is built on first use, from the config (preprocessing comes from CarriesPreprocess).
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..text import ClipTokenizer, ClipWordTokenizer

            t = self.config.text
            self._tokenizer = (ClipWordTokenizer(t.vocab, t.context_length) if t.vocab else
                               ClipTokenizer(context_length=t.context_length, pad_id=t.pad_id))
        return self._tokenizer

    def tokenize(self, texts) -> torch.Tensor:
        return self.tokenizer(texts)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalized pixels -> [B, D] projected features, not normalized (as OpenAI's)."""
        return self.visual(pixels).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, D] projected features, not normalized."""
        return self.text(tokens.to(self.logit_scale.device)).float()

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits per image [B_img, B_txt] and per text (its transpose), scaled by exp(logit_scale)."""
        img = F.normalize(self.encode_image(pixels), dim=-1)
        txt = F.normalize(self.encode_text(tokens), dim=-1)
        logits = self.logit_scale.exp() * img @ txt.t()
        return logits, logits.t()

    @property
    def family(self) -> str:
        return "clip"
