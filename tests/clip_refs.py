"""Tiny reference models with random weights (transformers' CLIPModel, open_clip's CLIP), and inputs for both."""

from __future__ import annotations

import torch

from _torchvision_shim import import_open_clip

TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                 vocab_size=49408, max_position_embeddings=77)
TINY_VISION = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                   image_size=32, patch_size=8)


def hf_clip(act: str = "quick_gelu", **vision):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config={**TINY_TEXT, "hidden_act": act},
                     vision_config={**TINY_VISION, "hidden_act": act, **vision}, projection_dim=16)
    return CLIPModel(cfg).eval()


OPEN_CLIP_VIT = dict(layers=2, width=32, patch_size=8, image_size=32, head_width=8)
OPEN_CLIP_RESNET = dict(layers=[1, 2, 1, 1], width=8, image_size=64, head_width=8)
OPEN_CLIP_TEXT = dict(context_length=77, vocab_size=49408, width=32, heads=4, layers=2)


def open_clip_model(vision_cfg: dict, quick_gelu: bool):
    """open_clip's own CLIP at random init, BatchNorm statistics randomized so eval-mode BN is not the identity."""
    oc = import_open_clip()
    model = oc.model.CLIP(embed_dim=16, vision_cfg=vision_cfg, text_cfg=OPEN_CLIP_TEXT, quick_gelu=quick_gelu)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return model.eval()


def open_clip_config(vision_cfg: dict, quick_gelu: bool) -> dict:
    return {"model_cfg": {"embed_dim": 16, "quick_gelu": quick_gelu, "vision_cfg": vision_cfg,
                          "text_cfg": OPEN_CLIP_TEXT},
            "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}


def token_ids(eot: int = 49407, pad: int = 0) -> torch.Tensor:
    """Four rows of different lengths (1 word to the full context) with random BPE ids."""
    g = torch.Generator().manual_seed(1)
    ids = torch.full((4, 77), pad)
    for row, length in enumerate((3, 9, 77, 20)):
        ids[row, 0] = 49406
        ids[row, 1:length - 1] = torch.randint(0, 49406, (length - 2,), generator=g)
        ids[row, length - 1] = eot
    return ids


def features(out) -> torch.Tensor:
    """transformers 5 returns projected features as `pooler_output` of an output object; 4.x a plain tensor."""
    return getattr(out, "pooler_output", out)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach() - b.detach()).abs().max().item()
