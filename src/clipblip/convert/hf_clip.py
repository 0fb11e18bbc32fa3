"""Hugging Face `CLIPModel` layout: config.json and state dict <-> ours. Separate q/k/v become one fused qkv."""

from __future__ import annotations

from ..config import ClipConfig, TextConfig, VisionConfig
from ..errors import ClipBlipError
from ..image import Preprocess
from .common import HF_RESAMPLE, StateDict, drop, fuse, invert, projection_groups, rename, resample_name, unfuse

_RULES = [
    (r"^text_model\.embeddings\.token_embedding\.", "text.token_embed."),
    (r"^text_model\.embeddings\.position_embedding\.weight$", "text.pos_embed"),
    (r"^text_model\.encoder\.layers\.", "text.blocks."),
    (r"^text_model\.final_layer_norm\.", "text.norm."),
    (r"^text_projection\.", "text.proj."),
    (r"^vision_model\.embeddings\.class_embedding$", "visual.cls_token"),
    (r"^vision_model\.embeddings\.patch_embedding\.", "visual.patch_embed."),
    (r"^vision_model\.embeddings\.position_embedding\.weight$", "visual.pos_embed"),
    (r"^vision_model\.pre_layrnorm\.", "visual.norm_pre."),  # sic: HF spells it this way
    (r"^vision_model\.encoder\.layers\.", "visual.blocks."),
    (r"^vision_model\.post_layernorm\.", "visual.norm."),
    (r"^visual_projection\.", "visual.proj."),
    (r"\.self_attn\.out_proj\.", ".attn.proj."),
    (r"\.layer_norm1\.", ".norm1."), (r"\.layer_norm2\.", ".norm2."),
]
_QKV = (r"\.self_attn\.(q|k|v)_proj\.", r".attn.\1.")
_IGNORED = (r"\.position_ids$",)  # a buffer older transformers versions saved


def is_hf_clip_layout(sd: StateDict) -> bool:
    return "text_model.embeddings.token_embedding.weight" in sd and "vision_model.embeddings.class_embedding" in sd


def from_hf(sd: StateDict) -> StateDict:
    out = rename(drop(sd, _IGNORED), _RULES + [_QKV])
    return fuse(out, projection_groups(out, ("text", "visual")))


def to_hf(sd: StateDict) -> StateDict:
    out = unfuse(sd, projection_groups(sd, ("text", "visual")))
    return rename(out, [(r"\.attn\.(q|k|v)\.", r".self_attn.\1_proj.")] + invert(_RULES))


def config_from_hf(hf: dict, preprocessor: dict | None = None) -> ClipConfig:
    """Our config from HF's config.json (and preprocessor_config.json). Missing keys take HF's defaults."""
    if hf.get("model_type") != "clip":
        raise ClipBlipError(f"config.json has model_type {hf.get('model_type')!r}, expected 'clip'")
    t = hf.get("text_config") or hf.get("text_config_dict") or {}
    v = hf.get("vision_config") or hf.get("vision_config_dict") or {}
    eos = t.get("eos_token_id", 49407)
    vocab = t.get("vocab_size", 49408)
    # eos_token_id == 2 is the legacy marker for "pool at argmax(ids)", i.e. at the highest id: the EOT token.
    eot = vocab - 1 if eos == 2 else eos
    embed = hf.get("projection_dim", 512)
    text = TextConfig(
        vocab_size=vocab, context_length=t.get("max_position_embeddings", 77), width=t.get("hidden_size", 512),
        heads=t.get("num_attention_heads", 8), layers=t.get("num_hidden_layers", 12),
        mlp_dim=t.get("intermediate_size", 2048), act=_act(t.get("hidden_act", "quick_gelu")),
        norm_eps=t.get("layer_norm_eps", 1e-5), output_dim=embed, sot_id=t.get("bos_token_id", 49406),
        eot_id=eot, pad_id=eot)
    vision = VisionConfig(
        arch="vit", image_size=v.get("image_size", 224), width=v.get("hidden_size", 768),
        layers=v.get("num_hidden_layers", 12), heads=v.get("num_attention_heads", 12),
        patch_size=v.get("patch_size", 32), mlp_dim=v.get("intermediate_size", 3072),
        act=_act(v.get("hidden_act", "quick_gelu")), norm_eps=v.get("layer_norm_eps", 1e-5), output_dim=embed)
    image = Preprocess(size=vision.image_size)
    if preprocessor:
        crop = preprocessor.get("crop_size", vision.image_size)
        image = Preprocess(size=crop["height"] if isinstance(crop, dict) else crop,
                            mean=tuple(preprocessor.get("image_mean", image.mean)),
                            std=tuple(preprocessor.get("image_std", image.std)),
                            interpolation=resample_name(preprocessor))
    return ClipConfig(vision=vision, text=text, image=image, embed_dim=embed,
                      init_logit_scale=hf.get("logit_scale_init_value", 2.6592))


def _act(name: str) -> str:
    if name not in ("quick_gelu", "gelu"):
        raise ClipBlipError(f"activation {name!r} is not supported (quick_gelu, gelu)")
    return name


def config_to_hf(cfg: ClipConfig) -> tuple[dict, dict]:
    """HF config.json and preprocessor_config.json for our config (ViT towers only: HF has no ResNet CLIP)."""
    if cfg.vision.arch != "vit":
        raise ClipBlipError("Hugging Face CLIPModel has no ResNet image tower; export this model natively instead")
    t, v = cfg.text, cfg.vision
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": cfg.init_logit_scale,
        "text_config": {
            "vocab_size": t.vocab_size, "max_position_embeddings": t.context_length, "hidden_size": t.width,
            "num_attention_heads": t.heads, "num_hidden_layers": t.layers, "intermediate_size": t.mlp_dim,
            "hidden_act": t.act, "layer_norm_eps": t.norm_eps, "projection_dim": cfg.embed_dim,
            "bos_token_id": t.sot_id, "eos_token_id": t.eot_id, "pad_token_id": t.pad_id},
        "vision_config": {
            "image_size": v.image_size, "patch_size": v.patch_size, "hidden_size": v.width,
            "num_attention_heads": v.heads, "num_hidden_layers": v.layers, "intermediate_size": v.mlp_dim,
            "hidden_act": v.act, "layer_norm_eps": v.norm_eps, "projection_dim": cfg.embed_dim},
    }
    im = cfg.image
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": im.size},
        "do_center_crop": True, "crop_size": {"height": im.size, "width": im.size}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(im.mean), "image_std": list(im.std),
        "resample": HF_RESAMPLE[im.interpolation], "do_convert_rgb": True}
    return config, preprocessor
