"""Export to other libraries' layouts. Hugging Face CLIPModel: config.json, preprocessor_config.json,
model.safetensors. transformers is not needed to write it, only to read it back."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from .convert import hf_clip
from .errors import ClipBlipError


def export_hf(model, directory) -> Path:
    if model.config.family != "clip":
        raise ClipBlipError(f"export to Hugging Face is implemented for CLIP, not {model.config.family}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config, preprocessor = hf_clip.config_to_hf(model.config)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    sd = {k: v.detach().contiguous().cpu() for k, v in hf_clip.to_hf(model.state_dict()).items()}
    save_file(sd, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
