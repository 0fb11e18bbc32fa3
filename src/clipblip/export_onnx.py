"""Export to ONNX: each tower a graph that onnxruntime runs without torch, beside the tokenizer (tokenizer.json for
the `tokenizers` library) and onnx_config.json, which says how to feed them.

CLIP: image.onnx (pixel_values [B, 3, S, S] -> image_embeds [B, D]) and text.onnx (input_ids [B, L] ->
text_embeds [B, D]). BLIP: image.onnx and text.onnx for ITC, vision.onnx (pixel_values -> image_tokens
[B, 1 + N, W] and image_embeds) and itm.onnx (image_tokens + input_ids -> itm_logits [B, 2], (no-match, match)).
Embeddings are projected and not normalized, as `encode_image` / `encode_text` give them. Batch is dynamic in
every graph, text length too; the image size is fixed.

The graphs are traced from small modules here rather than from the towers' `forward`, because tracing turns a
Python decision into a constant: CLIP's text tower cuts the padding after the batch's last EOT (`int(eot.max())`),
BLIP's padding mask is None when no row is padded, and `is_causal` is decided from a size. The modules here take
the path that holds for every batch: the whole length with an explicit causal mask (causal attention keeps what
follows the EOT from reaching it, so any length from the last EOT + 1 to the context length gives the same
features) and always a padding mask. tests/test_export_onnx.py holds them to clipblip within 1e-4.

BLIP's caption decoder is not exported: a step with its KV cache as graph inputs and outputs needs the past length
as a tensor, where our decoder keeps it in its caches as a Python int (or in CUDA-graph buffers updated in place);
that would be a second decoder to keep equal to the first. Captioning stays with clipblip.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import ClipBlipError
from .files import atomic_path, write_atomic
from .nn import padding_mask

OPSET = 17  # LayerNormalization is one op from 17 on; onnxruntime >= 1.12 runs it
ONNX_EXTRA = "ONNX export needs the onnx extra: pip install 'clipblip[onnx]'"
PARTS = {"clip": ("image", "text"), "blip": ("image", "text", "vision", "itm")}
_NEEDS = {"image": "itc", "text": "itc", "vision": "itm", "itm": "itm"}  # BLIP: the head each graph reads


def require_onnx():
    """The onnx module, or the one-line error that names the extra to install."""
    try:
        import onnx
    except ImportError:
        raise ClipBlipError(ONNX_EXTRA) from None
    return onnx


# ---- the graphs ------------------------------------------------------------------------------------------------
class ClipImage(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.visual = model.visual

    def forward(self, pixel_values):
        return self.visual(pixel_values)


class ClipText(nn.Module):
    """CLIP's text tower over the whole length, pooled at each row's first EOT."""

    def __init__(self, model):
        super().__init__()
        self.tower = model.text

    def forward(self, input_ids):
        t = self.tower
        eot = (input_ids == t.eot_id).to(torch.int32).argmax(dim=1)  # ONNX ArgMax, like torch, gives the first
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        causal = pos[None, :] <= pos[:, None]
        x = t.token_embed(input_ids) + t.pos_embed[: input_ids.shape[1]]
        for block in t.blocks:
            x = block(x, mask=causal, causal=True)
        x = x.gather(1, eot[:, None, None].expand(-1, 1, x.shape[-1]))[:, 0]
        return t.proj(t.norm(x))


def _text_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    return padding_mask(ids != pad_id, ids.shape[1], causal=False)


class BlipImage(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.visual, self.vision_proj = model.visual, model.vision_proj

    def forward(self, pixel_values):
        return self.vision_proj(self.visual(pixel_values))


class BlipText(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder, self.text_proj = model.text_encoder, model.text_proj
        self.pad_id = model.config.text.pad_id

    def forward(self, input_ids):
        return self.text_proj(self.encoder(input_ids, mask=_text_mask(input_ids, self.pad_id))[:, 0])


class BlipVision(nn.Module):
    """The ViT's tokens for itm.onnx and, from the same pass, the ITC embedding when the model has that head."""

    def __init__(self, model):
        super().__init__()
        self.visual, self.vision_proj = model.visual, getattr(model, "vision_proj", None)

    def forward(self, pixel_values):
        tokens = self.visual.forward_tokens(pixel_values)
        return tokens if self.vision_proj is None else (tokens, self.vision_proj(tokens[:, 0]))


class BlipITM(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder, self.itm_head = model.text_encoder, model.itm_head
        self.pad_id = model.config.text.pad_id

    def forward(self, image_tokens, input_ids):
        kv = self.encoder.context_kv(image_tokens)
        h = self.encoder(input_ids, mask=_text_mask(input_ids, self.pad_id), context_kv=kv)
        return self.itm_head(h[:, 0])


@dataclass(frozen=True)
class Graph:
    """One graph to write: its module, example inputs, and the shape of every input and then every output (axes
    named by a string are dynamic)."""
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    shapes: dict[str, list]

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(name for name in self.shapes if name not in self.inputs)


def _example_ids(model, length: int) -> torch.Tensor:
    """Two rows [first last pad...] and [first first last pad...] of `length` (tracing reads no value, only shapes)."""
    t = model.config.text
    first, last = (t.sot_id, t.eot_id) if model.family == "clip" else (t.cls_id, t.sep_id)
    ids = torch.full((2, length), t.pad_id, dtype=torch.long)
    ids[:, :2], ids[0, 1], ids[1, 2] = first, last, last
    return ids.to(model.device)


def graphs(model, parts: tuple[str, ...]) -> dict[str, Graph]:
    """The graphs of `parts` (see PARTS), keyed by file stem."""
    cfg, clip = model.config, model.family == "clip"
    s, dim, width = cfg.vision.image_size, cfg.embed_dim, cfg.vision.width
    pixels = torch.zeros(2, 3, s, s, device=model.device)  # tracing reads shapes, never values
    ids = _example_ids(model, cfg.text.context_length if clip else min(8, cfg.text.max_positions))
    image_in, text_in = {"pixel_values": ["batch", 3, s, s]}, {"input_ids": ["batch", "length"]}
    tokens = ["batch", 1 + (s // cfg.vision.patch_size) ** 2, width]  # BLIP's ViT: class token + patches
    itc = {"image_embeds": ["batch", dim]} if "itc" in getattr(cfg, "parts", ()) else {}
    make = {
        "image": lambda: Graph((ClipImage if clip else BlipImage)(model), {"pixel_values": pixels},
                               {**image_in, "image_embeds": ["batch", dim]}),
        "text": lambda: Graph((ClipText if clip else BlipText)(model), {"input_ids": ids},
                              {**text_in, "text_embeds": ["batch", dim]}),
        "vision": lambda: Graph(BlipVision(model), {"pixel_values": pixels},
                                {**image_in, "image_tokens": tokens, **itc}),
        "itm": lambda: Graph(BlipITM(model), {"image_tokens": torch.zeros(2, *tokens[1:], device=model.device),
                                              "input_ids": ids},
                             {"image_tokens": tokens, **text_in, "itm_logits": ["batch", 2]}),
    }
    return {p: make[p]() for p in parts}


def _write_graph(graph: Graph, path: Path) -> None:
    onnx = require_onnx()
    dynamic = {name: {i: axis for i, axis in enumerate(shape) if isinstance(axis, str)}
               for name, shape in graph.shapes.items()}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of torch.export's, which needs onnxscript besides onnx;
        # the tracer warns where a size becomes a constant: the image size, fixed by the graph's input shape
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(graph.module, tuple(graph.inputs.values()), str(tmp), input_names=list(graph.inputs),
                              output_names=list(graph.outputs), dynamic_axes=dynamic, opset_version=OPSET,
                              dynamo=False)
        onnx.checker.check_model(str(tmp))


# ---- the files beside them ---------------------------------------------------------------------------------------
def _word_level(vocab: tuple[str, ...]):
    """The pipeline of text/wordlevel.py's tokenizers (the unknown word is the second special in both families)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=vocab[1]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def build_tokenizer(model):
    """The model's tokenizer as one `tokenizers.Tokenizer`, specials, truncation and padding included: its
    `encode_batch` gives clipblip's ids (for CLIP's BPE, of text already cleaned: see onnx_config.json), padded to
    the longest row."""
    from tokenizers import normalizers, processors

    from .text import clip_bpe, wordpiece

    t = model.config.text
    if model.family == "clip":
        first, last, length = t.sot_id, t.eot_id, t.context_length
    else:
        first, last, length = t.cls_id, t.sep_id, t.max_length
    if t.vocab:
        tok = _word_level(tuple(t.vocab))
    elif model.family == "clip":
        tok = clip_bpe.rust_tokenizer()
        # clean_text's last steps; ftfy and html.unescape have no Rust twin (they change no plain ASCII text)
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    else:
        tok = wordpiece.rust_tokenizer()
    a, b = tok.id_to_token(first), tok.id_to_token(last)
    tok.post_processor = processors.TemplateProcessing(single=f"{a} $A {b}", special_tokens=[(a, first), (b, last)])
    tok.enable_truncation(length)  # counts the two specials: length - 2 pieces are kept, as clipblip keeps them
    # to the batch's longest row, as BLIP's tokenizer pads; CLIP's pads to its context, which changes no feature
    # (pooled at the EOT, behind a causal mask) and costs onnxruntime 8x at 32 captions (bench/README.md)
    tok.enable_padding(pad_id=t.pad_id, pad_token=tok.id_to_token(t.pad_id))
    return tok


def _io(graph: Graph) -> dict:
    dtype = {torch.float32: "float32", torch.int64: "int64"}
    return {"inputs": {n: {"shape": graph.shapes[n], "dtype": dtype[x.dtype]} for n, x in graph.inputs.items()},
            "outputs": {n: {"shape": graph.shapes[n], "dtype": "float32"} for n in graph.outputs}}


def _image_doc(pre) -> dict:
    return {"size": pre.size, "mode": "RGB", "layout": "NCHW", "resize": pre.resize,
            "interpolation": f"{pre.interpolation} (Pillow's)", "mean": list(pre.mean), "std": list(pre.std),
            "how": "squash: straight to size x size; shortest: the short side to size (the long side "
                   "int(size * long / short)), then a centre crop of size x size at offset round((long - size) / "
                   "2) (half to even); then (pixel / 255 - mean) / std per channel, as float32"}


def _text_doc(model) -> dict:
    t = model.config.text
    if model.family == "clip":
        doc = {"tokenizer": "tokenizer.json", "context_length": t.context_length, "pad_id": t.pad_id,
               "sot_id": t.sot_id, "eot_id": t.eot_id,
               "how": "tokenizer.json pads to the batch's longest row (clipblip pads to context_length: the same "
                      "features); text.onnx pools each row at its first eot_id behind a causal mask, so every row "
                      "needs one and any length from the last eot + 1 to context_length gives the same features"}
        if not t.vocab:
            doc["cleaning"] = ("tokenizer.json lowercases; for the same ids on text that is not plain printable "
                               "ASCII without '&', first clean it as clipblip does: ' '.join(html.unescape("
                               "html.unescape(ftfy.fix_text(text))).split()).lower()")
        return doc
    return {"tokenizer": "tokenizer.json", "max_length": t.max_length, "pad_id": t.pad_id, "cls_id": t.cls_id,
            "sep_id": t.sep_id, "enc_id": t.enc_id,
            "how": "tokenizer.json pads to the batch's longest row; the graphs mask pad_id. text.onnx reads the ids "
                   "as they come ([CLS] first); itm.onnx reads them with the first column set to enc_id ([ENC]), "
                   "as BLIP's ITM was trained, beside vision.onnx's image_tokens: row by row, or one image row "
                   "for every text. itm_logits are (no-match, match): softmax(...)[:, 1] is the match probability"}


def _versions() -> dict:
    from .version import __version__

    out = {"opset": OPSET, "clipblip": __version__, "torch": torch.__version__, "onnx": require_onnx().__version__}
    try:
        import onnxruntime
    except ImportError:  # not needed to export; recorded when it is there
        out["onnxruntime"] = None
    else:
        out["onnxruntime"] = onnxruntime.__version__
    return out


def describe(model, built: dict[str, Graph]) -> dict:
    """onnx_config.json: the graphs' inputs and outputs, and how to make them from images and texts."""
    doc = {"family": model.family, "graphs": {name: {"file": f"{name}.onnx", **_io(g)} for name, g in built.items()},
           "embeddings": "projected, not normalized: divide each by its L2 norm; logits = logit_scale * image @ "
                         "text.T (CLIP: softmax over texts gives zero-shot probabilities)",
           "image": _image_doc(model.preprocess), "text": _text_doc(model)}
    if "image" in built or "text" in built:
        doc["logit_scale"] = float(model.logit_scale.detach().exp())
    return {**doc, **_versions()}


# ---- the export ------------------------------------------------------------------------------------------------
def check_parts(model, parts) -> tuple[str, ...]:
    """`parts` as a tuple of graph names the model can give; None: all of them."""
    family, have = model.family, tuple(getattr(model.config, "parts", ()))
    known = PARTS[family]
    able = known if family == "clip" else tuple(p for p in known if _NEEDS[p] in have)
    parts = able if parts is None else tuple(dict.fromkeys(parts))
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise ClipBlipError(f"a {family} model has no ONNX graph {unknown[0]!r}: pick from {', '.join(known)}")
    missing = [p for p in parts if p not in able]
    if missing:
        raise ClipBlipError(f"this BLIP checkpoint has no {_NEEDS[missing[0]]} head (it has {', '.join(have)}), so "
                            f"it cannot give {missing[0]}.onnx; pick from {', '.join(able) or 'none'}")
    if not parts:
        raise ClipBlipError(f"this BLIP checkpoint ({', '.join(have)}) has no ITC or ITM head: nothing to export to "
                            "ONNX (the caption decoder is not exported; see the README's ONNX section)")
    return parts


def export_onnx(model, out_dir, parts=None) -> Path:
    """Write `parts` of `model` (graph names, see PARTS; None: every graph it has) as ONNX files in `out_dir`,
    with tokenizer.json and onnx_config.json. An fp32 model, on any device; the graphs run anywhere."""
    from .checkpoint import refuse_int8

    require_onnx()
    refuse_int8(model, "export")
    if model.dtype != torch.float32:
        raise ClipBlipError(f"ONNX export writes fp32 graphs and this model is {model.precision}: load it with "
                            "precision='fp32' (--precision fp32)")
    parts = check_parts(model, parts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    training = model.training
    model.eval()
    try:
        built = graphs(model, parts)
        for name, graph in built.items():
            _write_graph(graph, out / f"{name}.onnx")
    finally:
        model.train(training)
    write_atomic(out / "tokenizer.json", build_tokenizer(model).to_str(pretty=True))
    write_atomic(out / "onnx_config.json", json.dumps(describe(model, built), indent=2) + "\n")
    return out
