"""Tiny transformers BLIP models with random weights, and a converter to Salesforce's original layout."""

from __future__ import annotations

import re

import torch

TEXT = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, encoder_hidden_size=48,
            vocab_size=30524, max_position_embeddings=64)
VISION = dict(hidden_size=48, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32,
              patch_size=8)


def hf_blip(kind: str, eos_bias: float | None = None, vision_eps: float = 1e-5, **text):
    """kind: 'caption' | 'retrieval' | 'vqa'. `eos_bias` sets the LM bias of [SEP] (generation's end), so that
    some sequences end early and some run to the length limit."""
    import transformers as T

    cfg = T.BlipConfig(text_config={**TEXT, **text}, vision_config={**VISION, "layer_norm_eps": vision_eps},
                       image_text_hidden_size=16)
    cls = {"caption": T.BlipForConditionalGeneration, "retrieval": T.BlipForImageTextRetrieval,
           "vqa": T.BlipForQuestionAnswering}[kind]
    torch.manual_seed(0)
    model = cls(cfg).eval()
    # HF initializes BLIP's ViT with std 1e-10: every image would look the same to the text side. Re-draw every
    # weight so that images, texts and steps make visibly different choices.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.15 if p.dim() > 1 else 0.05))
        if eos_bias is not None:
            model.text_decoder.cls.predictions.bias[102] = eos_bias
        model.tie_weights()
    return model


def to_original(hf_state: dict) -> dict:
    """HF Blip* state dict -> Salesforce's original names (the inverse of transformers' conversion script)."""
    rules = [(r"^vision_model\.embeddings\.class_embedding$", "visual_encoder.cls_token"),
             (r"^vision_model\.embeddings\.position_embedding$", "visual_encoder.pos_embed"),
             (r"^vision_model\.embeddings\.patch_embedding\.", "visual_encoder.patch_embed.proj."),
             (r"^vision_model\.encoder\.layers\.", "visual_encoder.blocks."),
             (r"^vision_model\.post_layernorm\.", "visual_encoder.norm."),
             (r"\.self_attn\.projection\.", ".attn.proj."), (r"\.self_attn\.qkv\.", ".attn.qkv."),
             (r"\.layer_norm1\.", ".norm1."), (r"\.layer_norm2\.", ".norm2.")]
    out = {}
    for key, value in hf_state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


PIXELS_SEED = 3


def pixels(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(PIXELS_SEED))
