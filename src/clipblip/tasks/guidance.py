"""CLIP guidance: steer an image toward a prompt by gradient descent on the cosine distance between the image's
CLIP embedding and the prompt's, as CLIP-guided generation (VQGAN+CLIP, CLIP-guided diffusion) does.

The loss looks at several random crops ("cutouts") of the image per step, each resized to the model's input size
and lightly augmented (noise, colour jitter): a single view lets the optimizer find adversarial pixel patterns
that fool the encoder without drawing anything; many jittered views make such patterns cost more than the real
thing. Horizontal flips, standard elsewhere, are off by default: they swap "left of" and "right of".

The image is a parameterization: a fixed base (the start image, in logit space) plus a trainable offset kept at
one or several resolutions and upsampled bilinearly (`PARAMS`). Coarse offsets give smooth, blob-like edits;
full-resolution ones ("pixels") are free to make high-frequency noise.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ..errors import ClipBlipError
from ..image import load_image
from .inputs import text_features

# Downsampling factors of the trainable offsets, each upsampled to the image size and summed.
PARAMS = {"pixels": (1,), "lowres": (4,), "pyramid": (8, 4, 2, 1)}


# ------------------------------------------------------------------------------------------------ the loss


def normalize(model, x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> the model's normalized pixels, differentiably (Preprocess's mean and std)."""
    pre = model.preprocess
    mean = torch.tensor(pre.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def cutouts(x: torch.Tensor, n: int, size: int, min_scale: float = 0.7, generator=None) -> torch.Tensor:
    """[n * B, 3, size, size]: n random square crops of each image (side min_scale..1 of the short side),
    resized with bilinear interpolation (antialiased when shrinking). Cutout k of image b is row k * B + b."""
    _, _, h, w = x.shape
    out = []
    for _ in range(n):
        u = torch.rand(3, generator=generator).tolist()
        side = max(1, int(min(h, w) * (min_scale + (1 - min_scale) * u[0])))
        top, left = int((h - side) * u[1]), int((w - side) * u[2])
        crop = x[:, :, top:top + side, left:left + side]
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=side > size))
    return torch.cat(out)


def augment(x: torch.Tensor, noise: float = 0.02, jitter: float = 0.05, flip: bool = False,
            generator=None) -> torch.Tensor:
    """Per-view brightness/contrast jitter, Gaussian noise and (optionally) horizontal flips, in [0, 1] units."""
    b = x.shape[0]
    gain = 1 + jitter * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
    shift = jitter * (2 * torch.rand(b, 3, 1, 1, generator=generator) - 1)
    x = (x - 0.5) * gain.to(x) + 0.5 + shift.to(x)
    x = x + noise * torch.randn(x.shape, generator=generator).to(x)
    if flip:
        mirrored = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mirrored.view(b, 1, 1, 1).to(x.device), x.flip(-1), x)
    return x.clamp(0, 1)


def guidance_loss(model, images: torch.Tensor, texts, cutn: int = 8, min_scale: float = 0.7, noise: float = 0.02,
                  jitter: float = 0.05, flip: bool = False, generator=None, text_feats=None) -> torch.Tensor:
    """Mean cosine distance 1 - cos(image view, text) over `cutn` augmented cutouts of each image.

    images: [B, 3, H, W] in [0, 1], differentiable; texts: one string for all, or B strings (or pass their
    normalized `text_feats` [B or 1, D] to skip re-encoding them every step). Returns a scalar."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ClipBlipError(f"guidance_loss takes images [B, 3, H, W] in [0, 1], got {tuple(images.shape)}")
    b = images.shape[0]
    if text_feats is None:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if len(texts) not in (1, b):
            raise ClipBlipError(f"guidance_loss needs one text or one per image: got {len(texts)} for {b} images")
        text_feats = text_features(model, texts).to(images.device)
    views = augment(cutouts(images, cutn, model.preprocess.size, min_scale, generator), noise, jitter, flip,
                    generator)
    feats = F.normalize(model.encode_image(normalize(model, views)).float(), dim=-1)
    target = text_feats.float().expand(b, -1).repeat(cutn, 1)  # row k * B + b pairs with text b
    return (1 - (feats * target).sum(-1)).mean()


# -------------------------------------------------------------------------------------------- the image


class ImageParam(nn.Module):
    """sigmoid(base + sum of offsets upsampled from size / f for f in `factors`); offsets start at zero, so the
    first image is the start image (within the sigmoid's round trip)."""

    def __init__(self, start: torch.Tensor, factors: tuple[int, ...]):
        super().__init__()
        _, _, h, w = start.shape
        self.register_buffer("base", torch.logit(start.clamp(1e-3, 1 - 1e-3)))
        self.offsets = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, 3, max(1, h // f), max(1, w // f), device=start.device)) for f in factors])

    def forward(self) -> torch.Tensor:
        size = self.base.shape[-2:]
        z = self.base
        for o in self.offsets:
            z = z + (o if o.shape[-2:] == size else F.interpolate(o, size=size, mode="bilinear", align_corners=False))
        return torch.sigmoid(z)


def start_image(size: int, init=None, seed: int = 0) -> torch.Tensor:
    """[1, 3, size, size] in [0, 1]: the `init` image (path or PIL) resized, or gray with a little noise."""
    if init is None:
        g = torch.Generator().manual_seed(seed)
        return (0.5 + 0.1 * torch.randn(1, 3, size, size, generator=g)).clamp(0, 1)
    img = load_image(init).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255


def to_pil(x: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] or [3, H, W] in [0, 1] -> RGB PIL image."""
    x = x.detach().squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(x)


# ---------------------------------------------------------------------------------------------- the loop


def guide(model, prompt: str, steps: int = 150, size: int | None = None, init=None, param: str = "pyramid",
          lr: float = 0.1, cutn: int = 8, min_scale: float = 0.7, seed: int = 0, progress: bool = False,
          losses: list | None = None) -> Image.Image:
    """An image steered toward `prompt` by `steps` Adam steps on `guidance_loss`, from `init` (a path or PIL
    image) or a gray start. size: the image side (default: the model's input size). The model is frozen (its
    parameters' requires_grad is restored afterwards); only the image offsets train. `losses`, if given, receives
    the loss of every step."""
    if param not in PARAMS:
        raise ClipBlipError(f"unknown parameterization {param!r}: use one of {', '.join(PARAMS)}")
    size = size or model.preprocess.size
    if steps < 0 or cutn < 1 or size < 8 or not 0 < min_scale <= 1:
        raise ClipBlipError("guide needs steps >= 0, cutn >= 1, size >= 8 and 0 < min_scale <= 1")
    device = model.device
    with torch.inference_mode(False), torch.enable_grad(), _frozen(model):
        image = ImageParam(start_image(size, init, seed).to(device), PARAMS[param])
        text_feats = text_features(model, [prompt]).to(device).clone()  # a normal tensor, not an inference one
        opt = torch.optim.Adam(image.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        for _ in tqdm(range(steps), desc="guide", unit="step", disable=not progress):
            loss = guidance_loss(model, image(), None, cutn, min_scale, generator=g, text_feats=text_feats)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if losses is not None:
                losses.append(loss.item())
        return to_pil(image())


@contextmanager
def _frozen(model):
    """requires_grad off on every model parameter for the duration, then restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
