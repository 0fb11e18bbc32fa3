"""Captioning with BLIP's image-grounded decoder: greedy, beam search or nucleus sampling over a KV cache; the
cross-attention keys/values of each image are computed once (not per step, not per beam)."""

from __future__ import annotations

from contextlib import closing

import torch

from ..errors import ClipBlipError
from ..generate import GenerationConfig, generate
from .inputs import pixel_batches


def prompt_ids(model, prompt: str | None) -> torch.Tensor:
    """[1, L]: [DEC] and the prompt's word pieces, without the closing [SEP] (as BLIP and HF start decoding)."""
    if not prompt:
        return torch.tensor([[model.config.text.dec_id]])
    ids = model.tokenize([prompt], first="dec")
    return ids[:, :-1]


def require_blip(model, task: str) -> None:
    if getattr(model, "family", None) != "blip":
        raise ClipBlipError(f"{task} needs a BLIP model; this one is {getattr(model, 'family', type(model).__name__)}")


@torch.no_grad()
def caption(model, images, num_beams: int = 1, max_new_tokens: int = 30, min_new_tokens: int = 0, top_p=None,
            temperature: float = 1.0, repetition_penalty: float = 1.0, prompt: str | None = None, seed=None,
            length_penalty: float = 1.0, batch_size: int = 16) -> list[str]:
    """One caption per image (PIL images, paths or a pixel tensor). The prompt, if any, is not in the output."""
    require_blip(model, "captioning")
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams,
                           length_penalty=length_penalty, top_p=top_p, temperature=temperature,
                           repetition_penalty=repetition_penalty, seed=seed, eos_id=model.config.text.sep_id,
                           pad_id=model.config.text.pad_id)
    return [text for _, text in captions(model, images, cfg, prompt, batch_size)]


def captions(model, images, cfg: GenerationConfig, prompt=None, batch_size: int = 16, skipped=None,
             progress: bool = False, workers: int | None = None):
    """Yield (image index, caption); with `skipped` (a Skipped), bad images are recorded there and left out.
    `workers`: decoding threads, as in `inputs.pixel_batches`."""
    require_blip(model, "captioning")
    model.require("decoder", "write captions")
    start = prompt_ids(model, prompt)
    batches = pixel_batches(model, images, batch_size, skip_bad=skipped is not None, skipped=skipped,
                            progress=progress, workers=workers)
    with closing(batches):
        for idx, pixels in batches:
            yield from zip(idx, (model.tokenizer.decode(ids) for ids in caption_ids(model, pixels, start, cfg)))


def caption_ids(model, pixels: torch.Tensor, start: torch.Tensor, cfg: GenerationConfig) -> list[list[int]]:
    """New token ids per image, for preprocessed pixels [B, 3, S, S] and a prompt [1, L]."""
    device = model.device
    tokens = model.image_tokens(pixels.to(device))
    decoder = model.decoder(tokens, cuda_graphs=cfg.cuda_graphs)
    return generate(decoder, start.to(device).expand(tokens.shape[0], -1), cfg)
