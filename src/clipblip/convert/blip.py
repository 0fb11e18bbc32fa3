"""BLIP checkpoints: Salesforce's original `.pth` ({'model': state_dict}) and Hugging Face's Blip* layouts.

Both share the BERT text side (HF kept BLIP's med.py names); they differ in the ViT's names. Momentum copies and
queues of pretraining/retrieval files are training state, not weights of the model: they are set aside.
"""

from __future__ import annotations

import re

import torch

from ..config import BertConfig, BlipConfig, VisionConfig
from ..errors import ClipBlipError
from ..image import Preprocess
from .common import (
    HF_RESAMPLE,
    StateDict,
    block_indices,
    drop,
    fuse,
    invert,
    projection_groups,
    rename,
    resample_name,
    unfuse,
)

_TRAINING_STATE = (r"^(visual_encoder|text_encoder|vision_proj|text_proj)_m\.", r"^(image|text|idx)_queue$",
                   r"^(queue|ptr)_ptr$", r"^ptr_queue$", r"\.position_ids$")

_TEXT_RULES = [  # the LM head's rules come before the decoder prefix's, so that inverting them keeps them apart
    (r"^text_decoder\.cls\.predictions\.transform\.dense\.", "lm_head.dense."),
    (r"^text_decoder\.cls\.predictions\.transform\.LayerNorm\.", "lm_head.norm."),
    (r"^text_decoder\.cls\.predictions\.bias$", "lm_head.bias"),
    (r"^text_decoder\.bert\.", "text_decoder."),
    (r"\.embeddings\.word_embeddings\.", ".word_embed."),
    (r"\.embeddings\.position_embeddings\.weight$", ".pos_embed"),
    (r"\.embeddings\.LayerNorm\.", ".emb_norm."),
    (r"\.encoder\.layer\.", ".blocks."),
    (r"\.attention\.self\.query\.", ".attn.q."), (r"\.attention\.self\.key\.", ".attn.k."),
    (r"\.attention\.self\.value\.", ".attn.v."), (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.attention\.output\.LayerNorm\.", ".norm1."),
    (r"\.crossattention\.self\.query\.", ".xattn.q."), (r"\.crossattention\.self\.key\.", ".xattn.k."),
    (r"\.crossattention\.self\.value\.", ".xattn.v."), (r"\.crossattention\.output\.dense\.", ".xattn.proj."),
    (r"\.crossattention\.output\.LayerNorm\.", ".norm_x."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."), (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.output\.LayerNorm\.", ".norm2."),
]
_HF_VISION_RULES = [
    (r"^vision_model\.embeddings\.class_embedding$", "visual.cls_token"),
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual.patch_embed."),
    (r"^vision_model\.embeddings\.position_embedding$", "visual.pos_embed"),
    (r"^vision_model\.encoder\.layers\.", "visual.blocks."),
    (r"^vision_model\.post_layernorm\.", "visual.norm."),
    (r"\.self_attn\.qkv\.", ".attn.qkv."), (r"\.self_attn\.projection\.", ".attn.proj."),
    (r"\.layer_norm1\.", ".norm1."), (r"\.layer_norm2\.", ".norm2."),
]
_ORIGINAL_VISION_RULES = [
    (r"^visual_encoder\.cls_token$", "visual.cls_token"),
    (r"^visual_encoder\.pos_embed$", "visual.pos_embed"),
    (r"^visual_encoder\.patch_embed\.proj\.", "visual.patch_embed."),
    (r"^visual_encoder\.", "visual."),
]
_TEXT_TOWERS = ("text_encoder", "text_decoder")
# the LM head's output layer is the word embedding matrix (and its bias the head's bias) in every release
_TIED_LM = ("text_decoder.cls.predictions.decoder.weight", "text_decoder.cls.predictions.decoder.bias")


def is_original_layout(sd: StateDict) -> bool:
    return "visual_encoder.cls_token" in sd


def is_hf_layout(sd: StateDict) -> bool:
    return "vision_model.embeddings.class_embedding" in sd and any(
        k.startswith(("text_encoder.", "text_decoder.")) for k in sd)


def _squeeze_vision(sd: StateDict) -> StateDict:
    # both layouts keep [1, 1, W] / [1, N, W]; ours keeps [W] / [N, W]
    for key in ("visual.cls_token", "visual.pos_embed"):
        if key in sd and sd[key].dim() == 3:
            sd[key] = sd[key][0].reshape(-1, sd[key].shape[-1]) if key.endswith("pos_embed") else sd[key].reshape(-1)
    return sd


def _split(sd: StateDict) -> tuple[StateDict, StateDict]:
    """(image tower keys, the rest): each side has its own rename table, and the tables share suffixes."""
    vision = ("visual_encoder.", "vision_model.", "visual.")
    return ({k: v for k, v in sd.items() if k.startswith(vision)},
            {k: v for k, v in sd.items() if not k.startswith(vision)})


def to_native(sd: StateDict) -> StateDict:
    """Original or HF BLIP state dict -> ours."""
    sd = drop(sd, _TRAINING_STATE)
    _check_tied_lm_head(sd)
    vision, text = _split({k: v for k, v in sd.items() if k not in _TIED_LM})
    rules = _ORIGINAL_VISION_RULES if is_original_layout(sd) else _HF_VISION_RULES
    out = _squeeze_vision({**rename(vision, rules), **rename(text, _TEXT_RULES)})
    return fuse(out, projection_groups(out, _TEXT_TOWERS, cross=True))


def _check_tied_lm_head(sd: StateDict) -> None:
    weight, bias = sd.get(_TIED_LM[0]), sd.get(_TIED_LM[1])
    embed = sd.get("text_decoder.bert.embeddings.word_embeddings.weight")
    head_bias = sd.get("text_decoder.cls.predictions.bias")
    if (weight is not None and embed is not None and not torch.equal(weight, embed)) or (
            bias is not None and head_bias is not None and not torch.equal(bias, head_bias)):
        raise ClipBlipError("this BLIP checkpoint's LM head is not tied to its word embeddings; clipblip's "
                            "decoder ties them, as every BLIP release does")


def to_hf(sd: StateDict) -> StateDict:
    """Ours -> the Hugging Face Blip* layout (the tied LM head written out, as HF saves it)."""
    sd = unfuse(dict(sd), projection_groups(sd, _TEXT_TOWERS, cross=True))
    sd.pop("temp", None)  # HF's retrieval model has no temperature
    if "visual.cls_token" in sd:
        sd["visual.cls_token"] = sd["visual.cls_token"].reshape(1, 1, -1)
        sd["visual.pos_embed"] = sd["visual.pos_embed"].unsqueeze(0)
    vision, text = _split(sd)
    out = {**rename(vision, invert(_HF_VISION_RULES)), **rename(text, invert(_TEXT_RULES))}
    if "text_decoder.bert.embeddings.word_embeddings.weight" in out:
        out[_TIED_LM[0]] = out["text_decoder.bert.embeddings.word_embeddings.weight"]
        out[_TIED_LM[1]] = out["text_decoder.cls.predictions.bias"]
    return out


def parts_of(sd: StateDict) -> tuple[str, ...]:
    """Which heads a (native) state dict holds, in BLIP_PARTS order."""
    has = {"encoder": any(k.startswith("text_encoder.") for k in sd),
           "decoder": any(k.startswith("text_decoder.") for k in sd),
           "itc": "vision_proj.weight" in sd, "itm": "itm_head.weight" in sd}
    return tuple(p for p, present in has.items() if present)


def decoder_is_tied(sd: StateDict) -> bool:
    """Pretraining files store the decoder's shared weights twice, equal: everything but self-attention."""
    if not any(k.startswith("text_decoder.") for k in sd) or not any(k.startswith("text_encoder.") for k in sd):
        return False
    shared = [k for k in sd if k.startswith("text_decoder.") and not re.search(r"\.(attn|norm1)\.", k)]
    return bool(shared) and all(
        torch.equal(sd[k], sd.get("text_encoder." + k[len("text_decoder."):], torch.empty(0))) for k in shared)


def complete(sd: StateDict, cfg: BlipConfig) -> StateDict:
    """Fill what a layout does not store: HF's retrieval model has no ITC temperature."""
    if "itc" in cfg.parts and "temp" not in sd:
        sd = {**sd, "temp": torch.tensor(cfg.init_temp)}
    return sd


def infer_config(sd: StateDict, image_size: int | None = None, preprocess: dict | None = None,
                 vision_heads: int | None = None, text_heads: int | None = None) -> BlipConfig:
    """Hyperparameters from a native state dict's shapes. Head counts are not in the shapes: width // 64 is right
    for every BLIP release; pass them for models that differ. Norm epsilons and activation are BLIP's (1e-6 ViT,
    1e-12 text, GELU)."""
    w = sd["visual.patch_embed.weight"].shape[0]
    patch = sd["visual.patch_embed.weight"].shape[-1]
    grid = round((sd["visual.pos_embed"].shape[0] - 1) ** 0.5)
    vision = VisionConfig(arch="vit", image_size=image_size or grid * patch, width=w, heads=vision_heads or w // 64,
                          layers=len(block_indices(sd, "visual.blocks.")), patch_size=patch,
                          mlp_dim=sd["visual.blocks.0.mlp.fc1.weight"].shape[0], act="gelu", norm_eps=1e-6,
                          norm_pre=False, patch_bias=True, output_dim=None)
    tower = "text_encoder" if "text_encoder.word_embed.weight" in sd else "text_decoder"
    emb = sd[f"{tower}.word_embed.weight"]
    text = BertConfig(vocab_size=emb.shape[0], width=emb.shape[1], heads=text_heads or emb.shape[1] // 64,
                      layers=len(block_indices(sd, f"{tower}.blocks.")),
                      mlp_dim=sd[f"{tower}.blocks.0.mlp.fc1.weight"].shape[0],
                      max_positions=sd[f"{tower}.pos_embed"].shape[0],
                      cross_width=sd[f"{tower}.blocks.0.xattn.kv.weight"].shape[1])
    embed = sd["vision_proj.weight"].shape[0] if "vision_proj.weight" in sd else 256
    image = Preprocess(size=vision.image_size, resize="squash")
    if preprocess:
        image = Preprocess(**{**preprocess, "size": vision.image_size})
    return BlipConfig(vision=vision, text=text, image=image, embed_dim=embed, parts=parts_of(sd),
                      tie_decoder=decoder_is_tied(sd))


_HF_CLASSES = {("decoder",): "BlipForConditionalGeneration", ("encoder", "itc", "itm"): "BlipForImageTextRetrieval",
               ("encoder", "decoder"): "BlipForQuestionAnswering"}


def config_from_hf(hf: dict, parts: tuple[str, ...], preprocessor: dict | None = None) -> BlipConfig:
    """Our config from a Hugging Face BLIP config.json; missing keys take transformers' defaults."""
    if hf.get("model_type") != "blip":
        raise ClipBlipError(f"config.json has model_type {hf.get('model_type')!r}, expected 'blip'")
    t, v = hf.get("text_config") or {}, hf.get("vision_config") or {}
    vision = VisionConfig(arch="vit", image_size=v.get("image_size", 384), width=v.get("hidden_size", 768),
                          layers=v.get("num_hidden_layers", 12), heads=v.get("num_attention_heads", 12),
                          patch_size=v.get("patch_size", 16), mlp_dim=v.get("intermediate_size", 3072),
                          act=v.get("hidden_act", "gelu"), norm_eps=v.get("layer_norm_eps", 1e-5), norm_pre=False,
                          patch_bias=True, output_dim=None)
    text = BertConfig(vocab_size=t.get("vocab_size", 30524), width=t.get("hidden_size", 768),
                      heads=t.get("num_attention_heads", 8), layers=t.get("num_hidden_layers", 12),
                      mlp_dim=t.get("intermediate_size", 3072), max_positions=t.get("max_position_embeddings", 512),
                      act=t.get("hidden_act", "gelu"), norm_eps=t.get("layer_norm_eps", 1e-12),
                      cross_width=t.get("encoder_hidden_size", 768), pad_id=t.get("pad_token_id", 0),
                      sep_id=t.get("sep_token_id", 102), dec_id=t.get("bos_token_id", 30522))
    image = Preprocess(size=vision.image_size, resize="squash")
    if preprocessor:
        size = preprocessor.get("size", {})
        image = Preprocess(size=size.get("height", vision.image_size) if isinstance(size, dict) else size,
                           mean=tuple(preprocessor.get("image_mean", image.mean)),
                           std=tuple(preprocessor.get("image_std", image.std)),
                           interpolation=resample_name(preprocessor),
                           resize="squash")
    return BlipConfig(vision=vision, text=text, image=image, embed_dim=hf.get("image_text_hidden_size", 256),
                      parts=parts)


def config_to_hf(cfg: BlipConfig) -> tuple[dict, dict]:
    """HF config.json and preprocessor_config.json. HF has one class per task, so the parts must be one of its."""
    arch = _HF_CLASSES.get(tuple(cfg.parts))
    if arch is None:
        raise ClipBlipError(f"Hugging Face has no BLIP class holding exactly {cfg.parts}; its classes hold "
                            + "; ".join(f"{c}: {p}" for p, c in _HF_CLASSES.items()))
    t, v = cfg.text, cfg.vision
    config = {
        "architectures": [arch], "model_type": "blip", "image_text_hidden_size": cfg.embed_dim,
        "text_config": {"vocab_size": t.vocab_size, "hidden_size": t.width, "encoder_hidden_size": t.cross_width,
                        "intermediate_size": t.mlp_dim, "num_hidden_layers": t.layers, "num_attention_heads": t.heads,
                        "max_position_embeddings": t.max_positions, "hidden_act": t.act,
                        "layer_norm_eps": t.norm_eps, "bos_token_id": t.dec_id, "pad_token_id": t.pad_id,
                        "sep_token_id": t.sep_id},
        "vision_config": {"hidden_size": v.width, "intermediate_size": v.mlp_dim, "num_hidden_layers": v.layers,
                          "num_attention_heads": v.heads, "image_size": v.image_size, "patch_size": v.patch_size,
                          "hidden_act": v.act, "layer_norm_eps": v.norm_eps},
    }
    im = cfg.image
    preprocessor = {"image_processor_type": "BlipImageProcessor", "do_resize": True,
                    "size": {"height": im.size, "width": im.size},
                    "resample": HF_RESAMPLE[im.interpolation],
                    "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                    "image_mean": list(im.mean), "image_std": list(im.std), "do_convert_rgb": True}
    return config, preprocessor
