"""Export to Hugging Face layouts (config.json, preprocessor_config.json, model.safetensors): CLIPModel for CLIP,
the matching Blip* class for BLIP. transformers is not needed to write them, only to read them back."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from .checkpoint import tied_aliases
from .convert import blip, hf_clip
from .errors import ClipBlipError


def export_hf(model, directory) -> Path:
    """CLIP -> CLIPModel; BLIP -> the Blip* class its parts make (caption, retrieval or VQA)."""
    converter = {"clip": hf_clip, "blip": blip}.get(model.config.family)
    if converter is None:
        raise ClipBlipError(f"export to Hugging Face is not implemented for {model.config.family}")
    config, preprocessor = converter.config_to_hf(model.config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    tensors = converter.to_hf(model.state_dict())
    alias = tied_aliases(tensors)  # tied weights are stored once; transformers re-ties them on load
    sd = {k: v.detach().contiguous().cpu() for k, v in tensors.items() if alias[k] == k}
    save_file(sd, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
