"""Turning what users pass (PIL images, paths, a pixel tensor, a folder) into batches of pixels.

Batch jobs never die on one bad item: `pixel_batches(..., skip_bad=True)` skips and records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ClipBlipError
from ..image import load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Skipped:
    """Items a batch job could not use, with the reason for each."""
    items: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item, reason: str) -> None:
        self.items.append((str(item), reason))


def find_images(paths) -> list[Path]:
    """Files as given, and the image files (by suffix, recursively, sorted) of any directories."""
    found = []
    for p in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            found.append(p)
        else:
            raise ClipBlipError(f"{p}: no such file or directory")
    return found


def _as_list(images) -> list:
    return images if isinstance(images, (list, tuple)) else [images]


def pixel_batches(model, images, batch_size: int = 32, skip_bad: bool = False, skipped: Skipped | None = None,
                  progress: bool = False):
    """Yield (indices, pixels [b, 3, S, S]) over `images`; bad items raise, or with skip_bad go to `skipped`."""
    if isinstance(images, torch.Tensor):
        pixels = model.preprocess(images)
        for start in range(0, len(pixels), batch_size):
            yield list(range(start, min(start + batch_size, len(pixels)))), pixels[start:start + batch_size]
        return
    items, pre = _as_list(images), model.preprocess
    draft = pre.size if pre.fast else None
    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, desc="images", unit="batch", disable=not progress or len(starts) < 2):
        kept, loaded = [], []
        for i in range(start, min(start + batch_size, len(items))):
            try:
                loaded.append(load_image(items[i], draft_size=draft))
                kept.append(i)
            except ClipBlipError as e:
                if not skip_bad:
                    raise
                skipped.add(items[i], str(e))
        if loaded:
            yield kept, pre(loaded)


@torch.no_grad()
def image_features(model, images, batch_size: int = 32, skip_bad: bool = False, progress: bool = False):
    """L2-normalized image features [N, D] and the indices of the images they belong to, plus what was skipped."""
    skipped, feats, kept = Skipped(), [], []
    device = model.device
    for idx, pixels in pixel_batches(model, images, batch_size, skip_bad, skipped, progress):
        feats.append(F.normalize(model.encode_image(pixels.to(device)).float(), dim=-1).cpu())
        kept += idx
    dim = model.config.embed_dim
    return (torch.cat(feats) if feats else torch.empty(0, dim)), kept, skipped


@torch.no_grad()
def text_features(model, texts, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """L2-normalized text features [N, D]."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    device = model.device
    out = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="texts", unit="batch", disable=not progress or len(starts) < 2):
        tokens = model.tokenize(texts[start:start + batch_size]).to(device)
        out.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.embed_dim)
