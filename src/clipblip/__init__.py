"""clipblip: CLIP and BLIP from one set of parts.

    model = clipblip.load(source)     # a directory, a checkpoint file, or a catalog name
    pixels = model.preprocess(images)
    tokens = model.tokenize(texts)
    model.encode_image(pixels), model.encode_text(tokens)
    clipblip.classify(model, images, labels)
"""

from __future__ import annotations

from .errors import ClipBlipError
from .loading import load, save
from .version import __version__

__all__ = ["ClipBlipError", "answer", "caption", "classify", "match", "image_features", "image_to_text", "load", "save",
           "text_features", "text_to_image", "clipscore", "refclipscore", "rerank", "guidance_loss", "guide",
           "__version__"]


def image_features(model, images, batch_size: int = 32, workers: int | None = None):
    """Normalized image features [N, D] (a bad image raises; the CLI skips and lists them instead). The task's own
    `tasks.inputs.image_features` also returns which images were kept and which skipped."""
    from .tasks.inputs import image_features as _run

    return _run(model, images, batch_size, workers=workers)[0]


# The task functions themselves, imported on first use (`import clipblip` stays light), so that each takes every
# option its task module does: clipblip.caption is clipblip.tasks.caption.caption.
_TASKS = {
    "classify": "zeroshot", "caption": "caption", "answer": "vqa", "match": "itm", "text_to_image": "retrieval",
    "image_to_text": "retrieval", "text_features": "inputs", "clipscore": "score", "refclipscore": "score",
    "rerank": "score", "guidance_loss": "guidance", "guide": "guidance",
}


def __getattr__(name: str):
    if name in _TASKS:
        import importlib

        return getattr(importlib.import_module(f".tasks.{_TASKS[name]}", __name__), name)
    raise AttributeError(f"module 'clipblip' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_TASKS))
