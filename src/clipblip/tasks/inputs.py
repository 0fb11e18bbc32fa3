"""Turning what users pass (PIL images, paths, a pixel tensor, a folder) into batches of pixels.

Batch jobs never die on one bad item: `pixel_batches(..., skip_bad=True)` skips and records it.

Decoding and preprocessing run in a small thread pool (`ordered_map`), ahead of the model: Pillow releases the
GIL while it decodes and resizes (as torch does in the fast path's resize), so threads overlap them with each
other and with the model's forward pass. The threads stop at uint8 pixels (`Preprocess.uint8`); the consumer
normalizes each batch in one float op. Threads, not
processes (torch's DataLoader): nothing to pickle (PIL images, bytes, a lazy generator all work as inputs), no
start-up cost for a call of a few images, and an exception comes back at its item's position.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing, nullcontext
from functools import partial

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..errors import ClipBlipError
from ..jobs import Skipped, default_workers, ordered_map

PREFETCH_BATCHES = 2  # batches decoded ahead of the one the model works on: enough to hide a slow image
# PIL's lazy load (an Image.open'ed image) is not thread-safe: one object passed twice must not be loaded by two
# threads at once. A lock per object, striped: bounded memory, and two objects rarely share one.
_PIL_LOCKS = [threading.Lock() for _ in range(64)]


def _items(images):
    """A list or tuple as given, an iterator (a generator) as it is, to be read lazily; anything else is one item."""
    return images if isinstance(images, (list, tuple, Iterator)) else [images]


def _prepared(pre, item):
    """(item, uint8 pixels [3, S, S], None), or (item, None, the ClipBlipError); runs in a decoding thread. The
    batch is normalized in the consumer: float work in the threads would start an OpenMP team in each."""
    guard = _PIL_LOCKS[(id(item) >> 4) % len(_PIL_LOCKS)] if isinstance(item, Image.Image) else nullcontext()
    try:
        with guard:
            return item, pre.uint8(item), None
    except ClipBlipError as e:
        return item, None, e


def pixel_batches(model, images, batch_size: int = 32, skip_bad: bool = False, skipped: Skipped | None = None,
                  progress: bool = False, workers: int | None = None):
    """Yield (indices, pixels [b, 3, S, S]) over `images` (a list, an iterator read lazily, or a pixel tensor):
    batches of `batch_size` input positions, in order. Bad items raise, or with skip_bad go to `skipped`, in
    input order. `workers` decode and preprocess (see `ordered_map`; None: `default_workers()`, 0: none) at most
    PREFETCH_BATCHES batches ahead of the consumer. The pixels equal `model.preprocess` of the batch's items."""
    if isinstance(images, torch.Tensor):
        pixels = model.preprocess(images)
        for start in range(0, len(pixels), batch_size):
            yield list(range(start, min(start + batch_size, len(pixels)))), pixels[start:start + batch_size]
        return
    items = _items(images)
    n = None if isinstance(items, Iterator) else len(items)
    workers = default_workers() if workers is None else workers
    if n is not None:
        workers = min(workers, n if n > 1 else 0)  # one image gains nothing from a thread
    skipped = skipped if skipped is not None else Skipped()
    results = ordered_map(partial(_prepared, model.preprocess), items, workers,
                          max(PREFETCH_BATCHES * batch_size, 2 * workers))
    bar = tqdm(total=None if n is None else -(-n // batch_size), desc="images", unit="batch",
               disable=not progress or (n is not None and n <= batch_size))
    kept, pixels = [], []
    with closing(results), bar:
        for i, (item, px, error) in enumerate(results):
            if error is not None:
                if not skip_bad:
                    raise error
                skipped.add(item, str(error))
            else:
                kept.append(i)
                pixels.append(px)
            if (i + 1) % batch_size == 0 or i + 1 == n:
                bar.update()
                if kept:
                    yield kept, model.preprocess.normalize(torch.stack(pixels))
                kept, pixels = [], []
        if kept:  # the tail of an iterator, whose length was not known
            bar.update()
            yield kept, model.preprocess.normalize(torch.stack(pixels))


@torch.no_grad()
def image_features(model, images, batch_size: int = 32, skip_bad: bool = False, progress: bool = False,
                   workers: int | None = None):
    """L2-normalized image features [N, D] and the indices of the images they belong to, plus what was skipped.
    `workers`: decoding threads, as in `pixel_batches`."""
    skipped, feats, kept = Skipped(), [], []
    device = model.device
    with closing(pixel_batches(model, images, batch_size, skip_bad, skipped, progress, workers)) as batches:
        for idx, pixels in batches:
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
