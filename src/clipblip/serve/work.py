"""What the batcher runs: one function per task, each taking a batch of items and giving one result per item,
built on the task functions (no model logic here). Keys are tuples: (task, *settings shared by the batch).

Images arrive as the handlers reduced them, uint8 [3, S, S] from the model's `Preprocess.uint8`; a batch of them
is normalized here as `tasks.inputs.pixel_batches` does it, so results equal the task functions' on the files."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..catalog import DEFAULT
from ..errors import ClipBlipError
from ..generate import GenerationConfig
from ..tasks.caption import captions
from ..tasks.inputs import image_features, text_features
from ..tasks.itm import match
from ..tasks.vqa import answer
from ..tasks.zeroshot import classify


@dataclass
class Models:
    """What the service serves: a CLIP-style embedding model, BLIP for captions and matching, BLIP VQA, and an
    optional index (searched with `clip`)."""
    clip: Any
    blip: Any
    vqa: Any
    index: Any = None
    sources: dict | None = None  # name -> the source string each was loaded from

    def names(self) -> dict:
        """What /info and /embed show of the sources: a catalog name or hub id as given, a local path by its last
        part only (the server's folders are not the clients' business)."""
        return {k: None if v is None else Path(v).name if Path(v).exists() else v
                for k, v in (self.sources or {}).items()}


def load_models(clip: str | None, blip: str, vqa: str, index: str | None, device: str = "auto",
                precision: str = "auto"):
    """Models for the service, on `device` at `precision` (auto: the GPU when there is one); the CLIP model
    defaults to the one the index was built with."""
    from ..loading import load

    idx = None
    if index:
        from ..index import Index

        idx = Index.open(index)
        if clip is None:
            clip = idx.model
        elif clip != idx.model:
            print(f"clipblip: the index was built with {idx.model}, searching it with {clip}", file=sys.stderr)
    clip = clip or DEFAULT["clip"]
    models = Models(clip=load(clip, device=device, precision=precision),
                    blip=load(blip, device=device, precision=precision),
                    vqa=load(vqa, device=device, precision=precision), index=idx,
                    sources={"clip": clip, "blip": blip, "vqa": vqa, "index": index})
    if idx is not None and idx.dim != models.clip.config.embed_dim:
        raise ClipBlipError(f"the index holds {idx.dim}-d vectors but {clip} makes "
                            f"{models.clip.config.embed_dim}-d ones: serve it with the model it was built with")
    return models


def pixels(model, images: list[torch.Tensor]) -> torch.Tensor:
    """Normalized float32 [B, 3, S, S] of uint8 [3, S, S] images, as the model's preprocessing makes them."""
    return model.preprocess.normalize(torch.stack(images))


def embed_text(models: Models, texts: list[str]) -> list[list[float]]:
    return text_features(models.clip, texts).tolist()


def embed_image(models: Models, images: list) -> list[list[float]]:
    feats, _, _ = image_features(models.clip, pixels(models.clip, images), batch_size=len(images))
    return feats.tolist()


def classify_images(models: Models, images: list, labels: tuple[str, ...]) -> list:
    return classify(models.clip, pixels(models.clip, images), labels, top_k=len(labels), batch_size=len(images))


def caption_images(models: Models, images: list) -> list[str]:
    t = models.blip.config.text
    cfg = GenerationConfig(max_new_tokens=30, eos_id=t.sep_id, pad_id=t.pad_id)  # greedy: deterministic
    return [text for _, text in captions(models.blip, pixels(models.blip, images), cfg, batch_size=len(images))]


def ask(models: Models, pairs: list[tuple], candidates: tuple[str, ...] | None) -> list:
    images, questions = [p[0] for p in pairs], [p[1] for p in pairs]
    return answer(models.vqa, pixels(models.vqa, images), questions,
                  candidates=list(candidates) if candidates else None, batch_size=len(pairs))


def match_images(models: Models, images: list, texts: tuple[str, ...]) -> list[list[float]]:
    return match(models.blip, pixels(models.blip, images), list(texts), batch_size=len(images)).tolist()


def search(models: Models, queries: list[tuple[str, Any]], k: int) -> list:
    """Queries are ("text", str) or ("image", uint8 pixels), searched as one batch (as `index.query` would each)."""
    texts = [q for kind, q in queries if kind == "text"]
    images = [q for kind, q in queries if kind == "image"]
    by_text = iter(text_features(models.clip, texts)) if texts else iter(())
    by_image = iter(image_features(models.clip, pixels(models.clip, images))[0]) if images else iter(())
    vectors = torch.stack([next(by_text) if kind == "text" else next(by_image) for kind, _ in queries])
    return models.index.search(vectors.numpy(), k)


_TASKS = {"embed_text": embed_text, "embed_image": embed_image, "classify": classify_images,
          "caption": caption_images, "ask": ask, "match": match_images, "search": search}


def runner(models: Models):
    """run(key, items) for the Batcher: key = (task, *settings)."""
    def run(key: tuple, items: list) -> list:
        task = _TASKS.get(key[0])
        if task is None:
            raise ClipBlipError(f"unknown task {key[0]!r}")
        with torch.inference_mode():
            return task(models, items, *key[1:])
    return run
