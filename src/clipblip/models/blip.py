"""BLIP: a ViT and the Multimodal mixture of Encoder-Decoder, with ITC projections, an ITM head and an LM head.

`encode_image` / `encode_text` give the ITC features (as CLIP's do). The image-grounded paths take the image's
tokens, or better their per-block cross-attention keys/values (`image_kv`), computed once per image and reused by
every text, beam and decoding step.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import BlipConfig
from ..errors import ClipBlipError
from ..nn import KVCache, padding_mask
from ..towers import BertTower, LMHead, VisionTransformer
from .carries import CarriesPreprocess


def text_mask(ids: torch.Tensor, pad_id: int, causal: bool = False):
    """Self-attention mask of token ids padded with pad_id; None where no row has padding (and not causal)."""
    keep = ids != pad_id
    return None if bool(keep.all()) else padding_mask(keep, ids.shape[1], causal)


class BLIP(CarriesPreprocess, nn.Module):
    def __init__(self, cfg: BlipConfig):
        super().__init__()
        self.config = cfg
        parts = set(cfg.parts)
        unknown = parts - {"encoder", "decoder", "itc", "itm"}
        if unknown:
            raise ClipBlipError(f"unknown BLIP parts {sorted(unknown)}")
        self.visual = VisionTransformer(cfg.vision)
        self.text_encoder = BertTower(cfg.text) if parts & {"encoder", "itc", "itm"} else None
        self.text_decoder = BertTower(cfg.text) if "decoder" in parts else None
        self.lm_head = LMHead(cfg.text) if "decoder" in parts else None
        if "itc" in parts:
            self.vision_proj = nn.Linear(cfg.vision.width, cfg.embed_dim)
            self.text_proj = nn.Linear(cfg.text.width, cfg.embed_dim)
            self.temp = nn.Parameter(torch.tensor(float(cfg.init_temp)))
        if "itm" in parts:
            self.itm_head = nn.Linear(cfg.text.width, 2)
        if cfg.tie_decoder:
            self._tie_decoder()
        self._tokenizer = None

    def _tie_decoder(self) -> None:
        """Share every decoder weight with the encoder except self-attention (and its norm), as BLIP pretrains."""
        enc, dec = self.text_encoder, self.text_decoder
        if enc is None or dec is None:
            raise ClipBlipError("tie_decoder needs both the text encoder and the decoder")
        dec.word_embed, dec.pos_embed, dec.emb_norm = enc.word_embed, enc.pos_embed, enc.emb_norm
        for d, e in zip(dec.blocks, enc.blocks):
            d.xattn, d.norm_x, d.mlp, d.norm2 = e.xattn, e.norm_x, e.mlp, e.norm2

    @property
    def family(self) -> str:
        return "blip"

    @property
    def logit_scale(self) -> torch.Tensor:
        """log(1 / temp): ITC logits are similarities / temp, the same scale CLIP keeps as log(1 / T)."""
        self._require("itc", "compute ITC similarities")
        return -self.temp.log()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..text import BlipTokenizer, BlipWordTokenizer

            t = self.config.text
            self._tokenizer = BlipWordTokenizer(t.vocab, t.max_length) if t.vocab else BlipTokenizer(t.max_length)
        return self._tokenizer

    def tokenize(self, texts, first: str = "cls") -> torch.Tensor:
        """Token ids [B, L] ([first] ... [SEP], padded with [PAD]); the mask is `ids != pad_id`."""
        return self.tokenizer(texts, first=first)[0]

    def _require(self, part: str, task: str) -> None:
        if part not in self.config.parts:
            raise ClipBlipError(f"this BLIP checkpoint has no {part} (it has {', '.join(self.config.parts)}), so it "
                                f"cannot {task}; load a checkpoint made for it")

    def _self_mask(self, ids: torch.Tensor, causal: bool = False):
        return text_mask(ids, self.config.text.pad_id, causal)

    # ---- ITC ---------------------------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, embed_dim] ITC image features, not normalized (float32, whatever the model's precision)."""
        self._require("itc", "compute ITC features")
        return self.vision_proj(self.visual(pixels)).float()

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, embed_dim] ITC text features (unimodal encoder, [CLS]), not normalized."""
        self._require("itc", "compute ITC features")
        ids = ids.to(self.temp.device)
        return self.text_proj(self.text_encoder(ids, mask=self._self_mask(ids))[:, 0]).float()

    # ---- image-grounded paths ------------------------------------------------------------------------------------
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """The ViT's normalized tokens [B, 1 + N, W] that the text side attends to."""
        return self.visual.forward_tokens(pixels)

    def image_kv(self, tokens: torch.Tensor, tower: str = "encoder"):
        """Per-block cross-attention keys/values of image tokens for the encoder's or the decoder's blocks."""
        return (self.text_encoder if tower == "encoder" else self.text_decoder).context_kv(tokens)

    def itm_logits(self, ids: torch.Tensor, image_kv) -> torch.Tensor:
        """[T, 2] (no-match, match) logits. `ids` [T, L] start with [ENC] (BLIP) or [CLS] (HF's ITM path);
        `image_kv` from `image_kv` for 1 image (broadcast over the T texts) or for T images."""
        self._require("itm", "score image-text matching")
        h = self.text_encoder(ids, mask=self._self_mask(ids), context_kv=image_kv)
        return self.itm_head(h[:, 0]).float()

    def encode_question(self, ids: torch.Tensor, image_kv) -> torch.Tensor:
        """VQA: the question encoded with cross-attention to the image, [B, L, W]."""
        self._require("encoder", "encode questions")
        return self.text_encoder(ids, mask=self._self_mask(ids), context_kv=image_kv)

    def decoder(self, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> "TextDecoder":
        """A step-wise decoder (see `clipblip.generate`) attending to `context` ([B, N, W] image tokens, or VQA
        question states with their keep-mask [B, N])."""
        self._require("decoder", "generate text")
        return TextDecoder(self, context, context_mask)

    def lm_logits(self, ids: torch.Tensor, context_kv, context_mask=None) -> torch.Tensor:
        """Teacher-forced next-token logits [B, L, V] for decoder input `ids` (starting with [DEC])."""
        h = self.text_decoder(ids, mask=self._self_mask(ids, causal=True), causal=True, context_kv=context_kv,
                              context_mask=context_mask)
        return self.lm_head(h, self.text_decoder.word_embed.weight).float()


class TextDecoder:
    """The decoder with a KV cache per block; cross-attention keys/values computed once, here."""

    def __init__(self, model: BLIP, context: torch.Tensor, context_mask: torch.Tensor | None = None):
        self.model = model
        self.context_kv = model.text_decoder.context_kv(context)
        self.context_mask = None
        if context_mask is not None and not bool(context_mask.all()):
            self.context_mask = padding_mask(context_mask, 1, causal=False)
        self.caches = [KVCache() for _ in model.text_decoder.blocks]

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.model.text_decoder(ids, causal=True, context_kv=self.context_kv, context_mask=self.context_mask,
                                    caches=self.caches)
        return self.model.lm_head(h[:, -1], self.model.text_decoder.word_embed.weight).float()

    def reorder(self, index: torch.Tensor) -> None:
        for cache in self.caches:
            cache.select(index)
