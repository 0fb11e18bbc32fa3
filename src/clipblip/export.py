"""Export to Hugging Face layouts (config.json, preprocessor_config.json, model.safetensors): CLIPModel for CLIP,
the matching Blip* class for BLIP. transformers is not needed to write them, only to read them back."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import tied_aliases
from .convert import blip, hf_clip
from .errors import ClipBlipError
from .files import save_safetensors


def export_hf(model, directory, parts: tuple[str, ...] | None = None) -> Path:
    """CLIP -> CLIPModel; BLIP -> the Blip* class its parts make (caption, retrieval or VQA). `parts` exports a
    subset of a BLIP, e.g. ("decoder",) turns a pretrained BLIP with every head into a captioning model."""
    from .checkpoint import refuse_int8

    refuse_int8(model, "export")
    if parts is not None:
        model = _subset(model, tuple(parts))
    converter = {"clip": hf_clip, "blip": blip}.get(model.config.family)
    if converter is None:
        raise ClipBlipError(f"export to Hugging Face is not implemented for {model.config.family}")
    if model.config.text.vocab:
        raise ClipBlipError("this model reads a closed word vocabulary (config text.vocab), which Hugging Face's "
                            "CLIP/BLIP tokenizers cannot express; use it through clipblip.load")
    config, preprocessor = converter.config_to_hf(model.config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    tensors = converter.to_hf(model.state_dict())
    alias = tied_aliases(tensors)  # tied weights are stored once; transformers re-ties them on load
    sd = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if alias[k] == k}
    save_safetensors(sd, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


def _subset(model, parts: tuple[str, ...]):
    from dataclasses import replace

    from .checkpoint import build, load_strict

    if model.config.family != "blip" or not set(parts) <= set(model.config.parts):
        raise ClipBlipError(f"cannot take parts {parts} from a {model.config.family} model with "
                            f"{getattr(model.config, 'parts', ())}")
    sub = build(replace(model.config, parts=parts, tie_decoder=False))
    wanted = set(sub.state_dict())
    return load_strict(sub, {k: v for k, v in model.state_dict().items() if k in wanted}, "the model's own weights")
