"""OpenAI CLIP layout (also open_clip's `CLIP`): state dict <-> ours, and OpenAI's shape-based config inference."""

from __future__ import annotations

from ..config import ClipConfig, TextConfig, VisionConfig
from .common import StateDict, block_indices, drop, fuse, rename

# JIT archives keep these as tensors next to the weights (OpenAI's build_model deletes them too); a traced
# open_clip model also saves its causal mask, which we rebuild.
_META = (r"^input_resolution$", r"^context_length$", r"^vocab_size$", r"(^|\.)attn_mask$")

_BLOCK_RULES = [
    (r"\.ln_1\.", ".norm1."), (r"\.ln_2\.", ".norm2."),
    (r"\.attn\.in_proj_weight$", ".attn.qkv.weight"), (r"\.attn\.in_proj_bias$", ".attn.qkv.bias"),
    (r"\.attn\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."), (r"\.mlp\.c_proj\.", ".mlp.fc2."),
]
_TEXT_RULES = [
    (r"^token_embedding\.", "text.token_embed."), (r"^positional_embedding$", "text.pos_embed"),
    (r"^transformer\.resblocks\.", "text.blocks."), (r"^ln_final\.", "text.norm."),
]
_VIT_RULES = [
    (r"^visual\.conv1\.", "visual.patch_embed."), (r"^visual\.class_embedding$", "visual.cls_token"),
    (r"^visual\.positional_embedding$", "visual.pos_embed"), (r"^visual\.ln_pre\.", "visual.norm_pre."),
    (r"^visual\.transformer\.resblocks\.", "visual.blocks."), (r"^visual\.ln_post\.", "visual.norm."),
]
_RESNET_RULES = [
    (r"^visual\.attnpool\.positional_embedding$", "visual.attnpool.pos_embed"),
    (r"^visual\.attnpool\.q_proj\.", "visual.attnpool.attn.q."),
    (r"^visual\.attnpool\.c_proj\.", "visual.attnpool.attn.proj."),
]
_ATTNPOOL_KV = {"visual.attnpool.attn.kv": ("visual.attnpool.k_proj", "visual.attnpool.v_proj")}


def is_openai_layout(sd: StateDict) -> bool:
    return "token_embedding.weight" in sd and ("visual.proj" in sd or "visual.attnpool.c_proj.weight" in sd)


def from_openai(sd: StateDict) -> StateDict:
    sd = drop(sd, _META)
    vit = "visual.proj" in sd
    out = {k: v for k, v in sd.items() if k not in ("visual.proj", "text_projection")}
    out = rename(out, _TEXT_RULES + (_VIT_RULES if vit else _RESNET_RULES) + _BLOCK_RULES)
    if not vit:
        out = fuse(out, _ATTNPOOL_KV)
    else:
        out["visual.proj.weight"] = sd["visual.proj"].t().contiguous()
    out["text.proj.weight"] = sd["text_projection"].t().contiguous()
    return out


def infer_config(sd: StateDict, act: str = "quick_gelu", vision_heads: int | None = None,
                 text_heads: int | None = None) -> ClipConfig:
    """Hyperparameters from tensor shapes, as OpenAI's build_model does. Head counts are not in the shapes:
    OpenAI's rule is width // 64, which is right for every OpenAI release; pass them for models that differ."""
    embed_dim = sd["text_projection"].shape[1]
    width = sd["ln_final.weight"].shape[0]
    text = TextConfig(
        vocab_size=sd["token_embedding.weight"].shape[0], context_length=sd["positional_embedding"].shape[0],
        width=width, heads=text_heads or width // 64, layers=len(block_indices(sd, "transformer.resblocks.")),
        mlp_dim=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0], act=act, output_dim=embed_dim)
    if "visual.proj" in sd:
        w = sd["visual.conv1.weight"].shape[0]
        patch = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(
            arch="vit", image_size=patch * grid, width=w,
            layers=len(block_indices(sd, "visual.transformer.resblocks.")),
            heads=vision_heads or w // 64, patch_size=patch,
            mlp_dim=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0], act=act, output_dim=embed_dim)
    else:
        w = sd["visual.layer1.0.conv1.weight"].shape[0]
        layers = tuple(len(block_indices(sd, f"visual.layer{i}.")) for i in range(1, 5))
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = VisionConfig(arch="resnet", image_size=grid * 32, width=w, layers=layers,
                              heads=vision_heads or w * 32 // 64, patch_size=0, mlp_dim=0, act=act,
                              output_dim=embed_dim)
    return ClipConfig(vision=vision, text=text, embed_dim=embed_dim)
