import os
import random

import numpy as np
import pytest
import torch

from _torchvision_shim import define_missing_ops

# transformers imports torchvision when it is installed; make that import work before any test module runs.
define_missing_ops()
# Two threads make tiny ops ~40x slower on these 2-core machines.
torch.set_num_threads(1)
# Parity is checked in fp32 on the CPU, whatever "auto" would pick here (bf16 on a CPU with AMX); subprocesses
# inherit it. The precision tests ask for other precisions by name.
os.environ["CLIPBLIP_DEVICE"] = "cpu"
os.environ["CLIPBLIP_PRECISION"] = "fp32"


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny CLIP with random weights in the native format (32x32 images, 16-d embeddings)."""
    import clipblip
    from clipblip.config import ClipConfig, TextConfig, VisionConfig
    from clipblip.image import Preprocess
    from clipblip.models import CLIP

    torch.manual_seed(0)
    cfg = ClipConfig(
        vision=VisionConfig(image_size=32, width=32, layers=2, heads=4, patch_size=8, mlp_dim=64, output_dim=16),
        text=TextConfig(width=32, heads=4, layers=2, mlp_dim=64, output_dim=16),
        image=Preprocess(size=32), embed_dim=16)
    path = tmp_path_factory.mktemp("tiny_clip")
    clipblip.save(CLIP(cfg).eval(), path)
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Six small coloured images of mixed sizes and formats, plus one corrupt file and one non-image."""
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    colors = ["red", "green", "blue", "yellow", "white", "black"]
    for i, c in enumerate(colors):
        Image.new("RGB", (40 + 7 * i, 48 - 3 * i), c).save(d / f"{i}_{c}.{'png' if i % 2 else 'jpg'}")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (d / "notes.txt").write_text("not an image, and not picked up from a folder")
    return d


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory):
    """A tiny BLIP with every part (encoder, decoder, ITC, ITM), random weights, native format, 32x32 images."""
    import clipblip
    from clipblip.config import BertConfig, BlipConfig, VisionConfig
    from clipblip.image import Preprocess
    from clipblip.models import BLIP

    torch.manual_seed(0)
    cfg = BlipConfig(
        vision=VisionConfig(image_size=32, width=48, layers=2, heads=4, patch_size=8, mlp_dim=64, act="gelu",
                            norm_eps=1e-6, norm_pre=False, patch_bias=True, output_dim=None),
        text=BertConfig(width=48, heads=4, layers=2, mlp_dim=64, max_positions=64, cross_width=48),
        image=Preprocess(size=32, resize="squash"), embed_dim=16)
    model = BLIP(cfg).eval()
    with torch.no_grad():  # PyTorch's default init makes a decoder that repeats one token; spread it out
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("tiny_blip")
    clipblip.save(model, path)
    return path


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir):
    """The tiny CLIP, loaded once per test module."""
    import clipblip

    return clipblip.load(tiny_clip_dir)


@pytest.fixture(scope="module")
def tiny_blip(tiny_blip_dir):
    """The tiny BLIP, loaded once per test module."""
    import clipblip

    return clipblip.load(tiny_blip_dir)
