"""BLIP: a ViT and the Multimodal mixture of Encoder-Decoder, with ITC projections, an ITM head and an LM head.

`encode_image` / `encode_text` give the ITC features (as CLIP's do). The image-grounded paths take the image's
tokens, or better their per-block cross-attention keys/values (`image_kv`), computed once per image and reused by
every text, beam and decoding step.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import torch
from torch import nn

from ..config import BlipConfig
from ..errors import ClipBlipError
from ..nn import KVCache, padding_mask
from ..nn.attention import StaticKVCache
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
        self.require("itc", "compute ITC similarities")
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

    def require(self, part: str, task: str) -> None:
        if part not in self.config.parts:
            raise ClipBlipError(f"this BLIP checkpoint has no {part} (it has {', '.join(self.config.parts)}), so it "
                                f"cannot {task}; load a checkpoint made for it")

    def self_mask(self, ids: torch.Tensor, causal: bool = False):
        return text_mask(ids, self.config.text.pad_id, causal)

    # ---- ITC ---------------------------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, embed_dim] ITC image features, not normalized (float32, whatever the model's precision)."""
        self.require("itc", "compute ITC features")
        return self.vision_proj(self.visual(pixels)).float()

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, embed_dim] ITC text features (unimodal encoder, [CLS]), not normalized."""
        self.require("itc", "compute ITC features")
        ids = ids.to(self.temp.device)
        return self.text_proj(self.text_encoder(ids, mask=self.self_mask(ids))[:, 0]).float()

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
        self.require("itm", "score image-text matching")
        h = self.text_encoder(ids, mask=self.self_mask(ids), context_kv=image_kv)
        return self.itm_head(h[:, 0]).float()

    def encode_question(self, ids: torch.Tensor, image_kv) -> torch.Tensor:
        """VQA: the question encoded with cross-attention to the image, [B, L, W]."""
        self.require("encoder", "encode questions")
        return self.text_encoder(ids, mask=self.self_mask(ids), context_kv=image_kv)

    def decoder(self, context: torch.Tensor, context_mask: torch.Tensor | None = None,
                cuda_graphs: bool = False) -> "TextDecoder":
        """A step-wise decoder (see `clipblip.generate`) attending to `context` ([B, N, W] image tokens, or VQA
        question states with their keep-mask [B, N]). `cuda_graphs`: on CUDA, replay each step as a CUDA graph
        (opt-in: its capture has been tested on the CPU's static path only, not yet on a GPU)."""
        self.require("decoder", "generate text")
        return TextDecoder(self, context, context_mask, static=cuda_graphs and context.is_cuda)

    def lm_logits(self, ids: torch.Tensor, context_kv, context_mask=None) -> torch.Tensor:
        """Teacher-forced next-token logits [B, L, V] for decoder input `ids` (starting with [DEC])."""
        h = self.text_decoder(ids, mask=self.self_mask(ids, causal=True), causal=True, context_kv=context_kv,
                              context_mask=context_mask)
        return self.lm_head(h, self.text_decoder.word_embed.weight)  # float32 at any precision (LMHead)


class TextDecoder:
    """The decoder with a KV cache per block; cross-attention keys/values computed once, here.

    A step runs one of two ways, chosen at the first step. Eager (on the CPU, and for any caller that does not
    `reserve`): the tower over `KVCache`s that fill slot by slot. Static (on CUDA once `reserve` has given the
    length, with autograd off): one step of fixed shapes over a `_GraphStep`'s buffers, captured as a CUDA graph
    and replayed for every token, because at a few images per batch a step's few hundred small kernels take longer
    to launch than to run. `static=False` turns it off; `static=True` off CUDA runs the same static step without
    a graph, which is how it is tested where there is no GPU.
    """

    def __init__(self, model: BLIP, context: torch.Tensor, context_mask: torch.Tensor | None = None,
                 static: bool | None = None):
        self.model = model
        self.context_kv = model.text_decoder.context_kv(context)
        self.context_mask = None
        if context_mask is not None and not bool(context_mask.all()):
            self.context_mask = padding_mask(context_mask, 1, causal=False)
        self.caches = [KVCache() for _ in model.text_decoder.blocks]
        self.static = context.is_cuda if static is None else static
        # the LM projection runs in float32 (see LMHead); cast its tied weight once here, not at every step
        self.out_weight = model.text_decoder.word_embed.weight.float()
        self._capacity = 0  # tokens per row, from `reserve`; 0: not known
        self._graph: _GraphStep | None = None
        self._length = 0  # tokens fed so far on the static path

    def reserve(self, length: int) -> None:
        """No row will hold more than `length` tokens, prompt included: the caches are allocated once."""
        self._capacity = length
        for cache in self.caches:
            cache.reserve(length)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        if self._graph is None and not len(self.caches[0]):
            self._graph = self._static_step(ids.shape[0])
        if self._graph is not None:
            logits = self._graph.run(self.model, ids, self._length)
            self._length += ids.shape[1]
            return logits
        h = self.model.text_decoder(ids, causal=True, context_kv=self.context_kv, context_mask=self.context_mask,
                                    caches=self.caches)
        return self.model.lm_head(h[:, -1], self.out_weight)

    def reorder(self, index: torch.Tensor) -> None:
        if self._graph is not None:
            self._graph.select(index)
            return
        for cache in self.caches:
            cache.select(index)

    def _static_step(self, rows: int) -> "_GraphStep | None":
        """A static step for `rows` rows, from the model's pool or new; None where the eager path must run."""
        k = self.context_kv[0][0]
        images, max_positions = k.shape[0], self.model.config.text.max_positions
        if not (self.static and 0 < self._capacity <= max_positions and rows % images == 0
                and not torch.is_grad_enabled()):
            return None
        # buckets, so that batches of other sizes and prompts of other lengths share one graph: images up to a
        # power of two (padding rows are computed and dropped), slots up to a multiple of 32 (masked)
        bucket = 1 << (images - 1).bit_length()
        capacity = min(-(-self._capacity // 32) * 32, max_positions)
        params = [*self.model.text_decoder.parameters(), *self.model.lm_head.parameters()]
        key = (bucket, rows // images, capacity, tuple(k.shape[1:]), k.dtype, k.device, self.context_mask is None,
               torch.is_inference_mode_enabled(), tuple(p.data_ptr() for p in params))
        graph = _GRAPHS.get(self.model, {}).pop(key, None)
        if graph is None:
            graph = _GraphStep(bucket, rows // images, capacity, self.context_kv, self.context_mask)
        graph.load(self.context_kv, self.context_mask)
        weakref.finalize(self, _give_back, self.model, key, graph)
        return graph


# model -> {shape key: _GraphStep} of the decoders that are done. A decoder takes its step out (two live decoders
# never share buffers) and puts it back when it is garbage-collected; weak keys, so the pool dies with the model.
_GRAPHS: "weakref.WeakKeyDictionary[BLIP, OrderedDict]" = weakref.WeakKeyDictionary()
_GRAPHS_PER_MODEL = 4


def _give_back(model: BLIP, key: tuple, graph: "_GraphStep") -> None:
    shelf = _GRAPHS.setdefault(model, OrderedDict())
    shelf[key] = graph
    shelf.move_to_end(key)
    while len(shelf) > _GRAPHS_PER_MODEL:
        shelf.popitem(last=False)


class _GraphStep:
    """One decoding step of fixed shapes: `images` x `per` rows, `capacity` slots. Every input lives in a buffer
    allocated here (token ids, the position as a tensor, the images' keys/values and mask, the KV caches) and the
    step attends over whole cache buffers with the slots not filled yet masked, so one captured CUDA graph serves
    every token. It holds no reference to the model, so that the pool, keyed weakly by the model, lets it go."""

    def __init__(self, images: int, per: int, capacity: int, context_kv, context_mask):
        k0 = context_kv[0][0]
        rows, device = images * per, k0.device
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.slots = torch.arange(capacity, device=device)
        self.caches = [StaticKVCache(rows, k0.shape[1], capacity, k0.shape[3], self.pos, k0.dtype)
                       for _ in context_kv]
        self.context_kv = [(k.new_zeros(images, *k.shape[1:]), v.new_zeros(images, *v.shape[1:]))
                           for k, v in context_kv]
        self.context_mask = None if context_mask is None else context_mask.new_ones(images, *context_mask.shape[1:])
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None

    def load(self, context_kv, context_mask) -> None:
        """A new batch: its images' keys/values into the first rows (the padding rows keep whatever they held: they
        are computed and dropped, never mixed into a real row); caches zeroed, since a NaN left by an earlier batch
        in a masked slot would still poison attention."""
        n = context_kv[0][0].shape[0]
        for (k, v), (mine_k, mine_v) in zip(context_kv, self.context_kv):
            mine_k[:n].copy_(k)
            mine_v[:n].copy_(v)
        if context_mask is not None:
            self.context_mask[:n].copy_(context_mask)
        for cache in self.caches:
            cache.k.zero_()
            cache.v.zero_()

    def run(self, model: BLIP, ids: torch.Tensor, start: int) -> torch.Tensor:
        """ids [n, L] at positions start .. start+L-1 -> logits [n, V] after the last. A prompt goes in token by
        token: one graph of one token serves it too."""
        n, length = ids.shape
        if start + length > self.slots.shape[0]:
            raise ClipBlipError(f"decoding past {self.slots.shape[0]} tokens, more than the decoder reserved or has "
                                "positions for; ask for fewer new tokens")
        for j in range(length):
            self.ids[:n].copy_(ids[:, j:j + 1])
            self.pos.fill_(start + j)
            if not self.ids.is_cuda:
                self._forward(model)
                continue
            if self.graph is None:
                self._capture(model)
            self.graph.replay()
        return self.logits[:n].clone()  # the graph overwrites its output at the next replay

    def select(self, index: torch.Tensor) -> None:
        """Beam reorder of the first len(index) rows; padding rows stay where they are."""
        pad = torch.arange(len(index), self.ids.shape[0], device=index.device)
        for cache in self.caches:
            cache.select(torch.cat([index, pad]))

    def _forward(self, model: BLIP) -> None:
        tower = model.text_decoder  # BertTower.forward with the position and the cache slot as tensors
        x = tower.emb_norm(tower.word_embed(self.ids) + tower.pos_embed.index_select(0, self.pos))
        mask = (self.slots <= self.pos)[None, None, None, :]
        for block, cache, kv in zip(tower.blocks, self.caches, self.context_kv):
            x = block(x, mask=mask, causal=True, cache=cache, kv=kv, kv_mask=self.context_mask)
        self.logits = model.lm_head(x[:, -1], tower.word_embed.weight)

    def _capture(self, model: BLIP) -> None:
        # warm-up runs on a side stream, outside the capture, so that lazy set-up (cuBLAS handles and workspaces,
        # kernel loading) is not recorded; each one computes this very step, so repeating it changes nothing
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(model)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the capture must not fail the threads that decode the next batch's images meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self._forward(model)
