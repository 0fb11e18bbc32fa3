"""Every CLIP architecture in the catalog builds the same tensors as open_clip's model of that name
(built on the meta device: shapes only, no memory), so each released checkpoint will load strictly."""

import pytest
import torch

from _torchvision_shim import import_open_clip
from clipblip import catalog
from clipblip.checkpoint import build
from clipblip.convert import open_clip as oc_convert
from clipblip.convert.openai import from_openai

CLIP_ARCHS = sorted({catalog.get(n).arch for n in catalog.names("clip")})


@pytest.mark.parametrize("arch", CLIP_ARCHS)
def test_arch_matches_open_clip_shapes(arch):
    open_clip = import_open_clip()
    cfg = open_clip.get_model_config(arch.removesuffix("-quickgelu"))
    with torch.device("meta"):
        ref = open_clip.model.CLIP(**cfg, quick_gelu=arch.endswith("-quickgelu"))
        ours = build(oc_convert.config_from_open_clip(catalog.ARCHS[arch]))
    theirs = {k: tuple(v.shape) for k, v in from_openai(ref.state_dict()).items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: v for k, v in theirs.items() if not k.endswith("num_batches_tracked")}
    assert mine == theirs
    # and the head counts, which shapes alone do not show
    blocks = getattr(ref.visual, "transformer", None)
    if blocks is not None:
        assert ours.visual.blocks[0].attn.heads == blocks.resblocks[0].attn.num_heads
    assert ours.text.blocks[0].attn.heads == ref.transformer.resblocks[0].attn.num_heads
    their_act = type(ref.transformer.resblocks[0].mlp.gelu).__name__
    assert (their_act == "QuickGELU") == (ours.config.text.act == "quick_gelu") == arch.endswith("-quickgelu")
