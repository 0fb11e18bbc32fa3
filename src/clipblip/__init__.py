"""clipblip: CLIP and BLIP from one set of parts.

    model = clipblip.load(source)     # a directory, a checkpoint file, or a catalog name
    pixels = model.preprocess(images)
    tokens = model.tokenize(texts)
    model.encode_image(pixels), model.encode_text(tokens)
    clipblip.classify(model, images, labels)
"""

from __future__ import annotations

from pathlib import Path

from .errors import ClipBlipError

__version__ = "0.1.0"
__all__ = ["ClipBlipError", "answer", "caption", "classify", "match", "image_features", "image_to_text", "load", "save",
           "text_features", "text_to_image", "clipscore", "refclipscore", "rerank", "guidance_loss", "guide",
           "__version__"]


def load(source, *, arch: str | None = None, device: str = "auto", precision: str = "auto"):
    """A model from a native or Hugging Face directory, an OpenAI/open_clip file, or a catalog name, on `device`
    at `precision` (the rule, and what "auto" means, is in clipblip/runtime.py).

    `arch` names the architecture of a bare open_clip file (e.g. 'ViT-B-32'), whose activation and head counts
    are not in its tensors.
    """
    from . import checkpoint, runtime

    rt = runtime.resolve(device, precision)  # a bad device or precision fails before any file is read
    path = Path(source)
    if path.is_dir():
        model = checkpoint.load_dir(path, arch)
    elif path.is_file():
        model = checkpoint.load_file_checkpoint(path, arch)
    else:
        model = _load_catalog(str(source))
    return runtime.apply(model.eval(), rt)


def _load_catalog(name: str):
    from . import catalog, checkpoint, hub

    packaged = catalog.embedded(name)
    if packaged is not None:
        return checkpoint.load_dir(packaged)
    if name in catalog.EMBEDDED:
        raise ClipBlipError(f"the embedded model {name!r} is not in this installation (it has "
                            f"{', '.join(n for n in catalog.EMBEDDED if catalog.embedded(n)) or 'none'}); "
                            f"train it with `clipblip train --preset {name}` and pass the run's model/ folder")
    try:
        entry = catalog.get(name)
    except ClipBlipError as e:
        raise ClipBlipError(f"{name!r} is neither an existing path nor a catalog name: {e}") from None
    local = hub.resolve(entry)
    if local.is_dir():
        return checkpoint.load_dir(local, entry.arch, entry.preprocess)
    return checkpoint.load_file_checkpoint(local, entry.arch, entry.preprocess)


def save(model, directory):
    """Write `model` in the native format (config.json + model.safetensors)."""
    from . import checkpoint

    return checkpoint.save(model, directory)


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
