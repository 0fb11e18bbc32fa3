"""BLIP's momentum encoder and feature queues (ITC with momentum distillation).

An exponential moving average of the image tower, the unimodal text encoder and both ITC projections gives
stable targets, and queues of its past features give many more negatives than a batch holds. The momentum copy
is not trained and not wrapped in DDP: every rank updates it from identical weights, so the copies stay equal.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..models.blip import text_mask

PARTS = ("visual", "vision_proj", "text_encoder", "text_proj")


class Momentum(nn.Module):
    def __init__(self, model, momentum: float = 0.995, queue_size: int = 4096, seed: int = 0,
                 text_ids: bool = False):
        super().__init__()
        self.momentum = momentum
        self.pad_id = model.config.text.pad_id
        # The encoder's cross-attention is never used here; copying the whole tower keeps the names simple.
        self.parts = nn.ModuleDict({name: copy.deepcopy(getattr(model, name)) for name in PARTS})
        self.parts.requires_grad_(False)
        dim = model.config.embed_dim
        g = torch.Generator().manual_seed(seed)
        # BLIP starts the queues with random unit vectors (negatives that match nothing) and item ids -1.
        self.register_buffer("queue_img", F.normalize(torch.randn(queue_size, dim, generator=g), dim=1))
        self.register_buffer("queue_txt", F.normalize(torch.randn(queue_size, dim, generator=g), dim=1))
        self.register_buffer("queue_ids", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        # text_ids: the queued texts' token ids too (pad: empty), for ITM negatives mined from the queue
        shape = (queue_size, model.config.text.max_length)
        self.register_buffer("queue_text", torch.full(shape, self.pad_id, dtype=torch.long) if text_ids else None)

    @torch.no_grad()
    def update(self, model) -> None:
        """param_m = m * param_m + (1 - m) * param, as BLIP does before computing momentum features."""
        ema = [pm for name in PARTS for pm in self.parts[name].parameters()]
        online = [p.detach() for name in PARTS for p in getattr(model, name).parameters()]
        torch._foreach_mul_(ema, self.momentum)  # two kernels for all parameters instead of two per parameter
        torch._foreach_add_(ema, online, alpha=1 - self.momentum)

    @torch.no_grad()
    def features(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized momentum ITC features of images and texts ([CLS]-started ids)."""
        img = self.parts["vision_proj"](self.parts["visual"](pixels))
        return F.normalize(img.float(), dim=-1), self.text_features(ids)

    @torch.no_grad()
    def text_features(self, ids: torch.Tensor) -> torch.Tensor:
        p = self.parts
        txt = p["text_proj"](p["text_encoder"](ids, mask=text_mask(ids, self.pad_id))[:, 0])
        return F.normalize(txt.float(), dim=-1)

    def queue(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.queue_img.clone(), self.queue_txt.clone(), self.queue_ids.clone()

    @torch.no_grad()
    def enqueue(self, img: torch.Tensor, txt: torch.Tensor, ids: torch.Tensor, text=None) -> None:
        """Overwrite the oldest entries with this step's gathered momentum features (a ring buffer); `text`: the
        texts' token ids, kept when the queue keeps them."""
        size = self.queue_ids.shape[0]
        n = min(img.shape[0], size)
        where = (self.ptr + torch.arange(n, device=self.ptr.device)) % size
        self.queue_img[where] = img[-n:].to(self.queue_img.dtype)
        self.queue_txt[where] = txt[-n:].to(self.queue_txt.dtype)
        self.queue_ids[where] = ids[-n:]
        if self.queue_text is not None and text is not None:
            self.queue_text[where] = text[-n:]
        self.ptr.copy_((self.ptr + n) % size)
