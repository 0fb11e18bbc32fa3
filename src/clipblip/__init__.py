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
           "text_features",
           "text_to_image", "clipscore", "refclipscore", "rerank", "guidance_loss", "guide", "__version__"]


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


def classify(model, images, labels, templates=None, top_k: int = 5):
    from .tasks.zeroshot import classify as _classify

    return _classify(model, images, labels, templates=templates, top_k=top_k)


def caption(model, images, num_beams: int = 1, max_new_tokens: int = 30, min_new_tokens: int = 0, top_p=None,
            temperature: float = 1.0, repetition_penalty: float = 1.0, prompt=None, seed=None) -> list[str]:
    """BLIP captions, one per image: greedy, beam search (num_beams > 1) or nucleus sampling (top_p)."""
    from .tasks.caption import caption as _run

    return _run(model, images, num_beams=num_beams, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty, prompt=prompt, seed=seed)


def answer(model, images, questions, candidates=None):
    """BLIP VQA: a generated answer per (image, question), or with `candidates` ranked [(answer, prob)] lists."""
    from .tasks.vqa import answer as _run

    return _run(model, images, questions, candidates=candidates)


def match(model, images, texts):
    """BLIP ITM: match probability [n_images, n_texts]."""
    from .tasks.itm import match as _run

    return _run(model, images, texts)


def text_to_image(model, texts, image_feats, top_k: int = 5):
    """Per text, [(image row, score)] best first; `image_feats` from `image_features`."""
    from .tasks.retrieval import text_to_image as _run

    return _run(model, texts, image_feats, top_k)


def image_to_text(model, images, text_feats, top_k: int = 5):
    """Per image, [(text row, score)] best first; `text_feats` from `text_features`."""
    from .tasks.retrieval import image_to_text as _run

    return _run(model, images, text_feats, top_k)


def image_features(model, images, batch_size: int = 32):
    """Normalized image features [N, D] (a bad image raises; the CLI skips and lists them instead)."""
    from .tasks.inputs import image_features as _run

    return _run(model, images, batch_size)[0]


def text_features(model, texts, batch_size: int = 256):
    """Normalized text features [N, D]."""
    from .tasks.inputs import text_features as _run

    return _run(model, texts, batch_size)


def clipscore(model, images, texts, w: float = 2.5):
    """CLIPScore w * max(cos, 0) per (image, text) pair (Hessel et al. 2021): a float for one pair, else [N]."""
    from .tasks.score import clipscore as _run

    return _run(model, images, texts, w)


def refclipscore(model, images, texts, references, w: float = 2.5):
    """RefCLIPScore: the harmonic mean of CLIPScore and the best reference similarity, per pair."""
    from .tasks.score import refclipscore as _run

    return _run(model, images, texts, references, w)


def rerank(model, prompt, images, by: str = "clip", top_k=None):
    """[(image index, score)] best first, by CLIP similarity ("clip") or BLIP match probability ("itm")."""
    from .tasks.score import rerank as _run

    return _run(model, prompt, images, by, top_k)


def guidance_loss(model, images, texts, cutn: int = 8):
    """Differentiable mean cosine distance between augmented crops of images [B, 3, H, W] in [0, 1] and texts."""
    from .tasks.guidance import guidance_loss as _run

    return _run(model, images, texts, cutn)


def guide(model, prompt, steps: int = 150, size=None, init=None, param: str = "pyramid", seed: int = 0):
    """A PIL image steered toward `prompt` by CLIP guidance, from `init` (path or PIL image) or a gray start."""
    from .tasks.guidance import guide as _run

    return _run(model, prompt, steps=steps, size=size, init=init, param=param, seed=seed)
