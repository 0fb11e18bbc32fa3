"""Find, read and strictly load checkpoints of every supported layout; write the native one.

Native: a directory with config.json (our dataclass plus `family`) and model.safetensors. Foreign layouts are
translated at the border by the converters; after that there is one set of names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import config as C
from .convert import blip, hf_clip, open_clip, openai, torchscript
from .convert.common import StateDict
from .errors import ClipBlipError
from .files import read_bounded, save_safetensors
from .towers import resample_pos_embed

WEIGHTS = "model.safetensors"
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def read_state_dict(path: Path) -> tuple[StateDict, bool]:
    """(state dict, whether it came from a TorchScript archive). Any read failure names the file."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path)), False
        if torchscript.is_archive(path):
            return torchscript.read_tensors(path), True
        return open_clip.unwrap(torch.load(str(path), map_location="cpu", weights_only=True)), False
    except ClipBlipError:
        raise
    except Exception as e:  # torch and safetensors raise many types for a damaged file
        raise ClipBlipError(f"cannot read checkpoint {path}: {type(e).__name__}: {str(e)[:200]}") from None


MAX_JSON_BYTES = 16 << 20  # a config with a closed word vocabulary is a few KB; CLIP's BPE lives elsewhere


def _read_json(path: Path) -> dict:
    """A JSON object from a regular file of at most MAX_JSON_BYTES."""
    try:
        data = json.loads(read_bounded(path, MAX_JSON_BYTES))
    except OSError as e:
        raise ClipBlipError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # RecursionError: [[[[...]]]] nested past Python's limit
        raise ClipBlipError(f"cannot read {path}: not JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise ClipBlipError(f"{path} must hold a JSON object of settings, not a {type(data).__name__}")
    return data


def build(cfg):
    from .models import BLIP, CLIP

    C.validate(cfg)  # configs come from files (ours or a converter's reading of a foreign one): check, then build
    try:
        return {"clip": CLIP, "blip": BLIP}[cfg.family](cfg)
    except ValueError as e:  # e.g. a width that the head count does not divide
        raise ClipBlipError(f"the config does not describe a model that can be built: {e}") from None


def tied_aliases(state: StateDict) -> dict[str, str]:
    """key -> the first key holding the same tensor (tied weights appear under several names)."""
    first, out = {}, {}
    for key, value in state.items():
        ident = (value.data_ptr(), value.shape, value.stride()) if value.numel() else (key,)
        out[key] = first.setdefault(ident, key)
    return out


def load_strict(model: torch.nn.Module, sd: StateDict, source) -> torch.nn.Module:
    """Load every weight or fail naming what is missing, unexpected or misshapen."""
    own = model.state_dict()
    pos = "visual.pos_embed"
    if pos in sd and pos in own and sd[pos].shape != own[pos].shape:
        grid = model.config.vision.image_size // model.config.vision.patch_size
        sd = {**sd, "visual.pos_embed": resample_pos_embed(sd["visual.pos_embed"], grid)}
    alias = tied_aliases(own)
    # a tied weight is loaded through any one of its names
    present = {alias[k] for k in sd if k in alias}
    missing = [k for k in own if k not in sd and alias[k] not in present and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{name} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
        raise ClipBlipError(f"{source}: weights do not fit the model; " + "; ".join(parts))
    model.load_state_dict(sd, strict=False)
    return model.eval()


def save(model, directory) -> Path:
    """Write the native format: config.json + model.safetensors, in the dtype the model has (bf16 stays bf16)."""
    refuse_int8(model, "save")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    C.save(model.config, directory)
    state = model.state_dict()
    alias = tied_aliases(state)
    sd = {k: v.detach().contiguous().cpu() for k, v in state.items() if alias[k] == k}  # tied weights once
    save_safetensors(sd, directory / WEIGHTS, metadata={"format": "pt", "family": model.config.family})
    return directory


def refuse_int8(model, what: str) -> None:
    if getattr(model, "precision", "fp32") == "int8":
        raise ClipBlipError(f"cannot {what} an int8 model (its Linear weights are packed for torch's int8 kernels): "
                            f"load it with precision='fp32' (or bf16) and {what} that")


def load_native(directory: Path):
    data = _read_json(directory / "config.json")
    try:
        cfg = C.from_dict(data)
    except ClipBlipError as e:
        raise ClipBlipError(f"{directory / 'config.json'}: {e}") from None
    sd, _ = read_state_dict(_first(directory, (WEIGHTS,)))
    return load_strict(build(cfg), sd, directory)


def _first(directory: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise ClipBlipError(f"{directory}: no weights file; expected one of {list(names)}")


def load_dir(directory: Path, arch: str | None = None, preprocess: dict | None = None):
    """A native directory, a Hugging Face CLIPModel snapshot, or an open_clip hub snapshot."""
    cfg_path = directory / "config.json"
    if cfg_path.is_file():
        data = _read_json(cfg_path)
        if "family" in data:
            return load_native(directory)
        if data.get("model_type") == "clip":
            pre = directory / "preprocessor_config.json"
            cfg = hf_clip.config_from_hf(data, _read_json(pre) if pre.is_file() else None)
            sd, _ = read_state_dict(_first(directory, _HF_WEIGHTS))
            if not hf_clip.is_hf_clip_layout(sd):
                raise ClipBlipError(f"{directory}: config.json says CLIPModel but the weights are not in its layout")
            return load_strict(build(cfg), hf_clip.from_hf(sd), directory)
        if data.get("model_type") == "blip":
            pre = directory / "preprocessor_config.json"
            sd, _ = read_state_dict(_first(directory, _HF_WEIGHTS))
            if not blip.is_hf_layout(sd):
                raise ClipBlipError(f"{directory}: config.json says BLIP but the weights are not in its layout")
            sd = blip.to_native(sd)
            cfg = blip.config_from_hf(data, blip.parts_of(sd), _read_json(pre) if pre.is_file() else None)
            return load_strict(build(cfg), blip.complete(sd, cfg), directory)
        raise ClipBlipError(f"{directory}/config.json is neither a clipblip config nor a Hugging Face CLIP/BLIP "
                            f"(model_type={data.get('model_type')!r})")
    if any((directory / n).is_file() for n in _OPEN_CLIP_WEIGHTS):
        return load_file_checkpoint(_first(directory, _OPEN_CLIP_WEIGHTS), arch, preprocess)
    raise ClipBlipError(f"{directory}: not a checkpoint directory (no config.json, no open_clip weights)")


def load_file_checkpoint(path: Path, arch: str | None = None, preprocess: dict | None = None):
    """One weights file: OpenAI (.pt, TorchScript or plain) or open_clip (.bin/.safetensors/.pt, maybe wrapped)."""
    sd, jit = read_state_dict(path)
    if blip.is_original_layout(sd) or blip.is_hf_layout(sd):
        return _load_blip_file(path, sd, arch, preprocess)
    if hf_clip.is_hf_clip_layout(sd):
        raise ClipBlipError(f"{path} holds Hugging Face CLIPModel weights: pass the directory with its config.json")
    if open_clip.is_custom_text_layout(sd):
        raise ClipBlipError(f"{path} is an open_clip CustomTextCLIP (timm or HF text tower): not supported")
    if not openai.is_openai_layout(sd):
        raise ClipBlipError(f"{path}: unknown checkpoint layout (keys start {sorted(sd)[:3]}); supported: OpenAI "
                            "CLIP, open_clip, Hugging Face CLIPModel directories, clipblip native directories")
    cfg = _open_clip_config(path, arch, preprocess)
    if cfg is None:
        if not (jit or path.suffix == ".pt"):
            raise ClipBlipError(
                f"{path}: an open_clip checkpoint does not say its activation (GELU or QuickGELU) or head counts; "
                "pass arch='ViT-B-32' (or the name it was trained as, see `clipblip models --archs`), "
                "or put its open_clip_config.json beside it")
        cfg = openai.infer_config(sd)  # OpenAI's releases: QuickGELU, width // 64 heads
    else:
        open_clip.check_shapes(cfg, sd)
    return load_strict(build(cfg), openai.from_openai(sd), path)


def _load_blip_file(path: Path, sd: StateDict, arch: str | None, preprocess: dict | None):
    """A bare BLIP weights file: shapes give the architecture, the catalog arch (if any) the image size."""
    size = None
    if arch is not None:
        from . import catalog

        size = catalog.image_size(arch) if arch in catalog.ARCHS else None
    sd = blip.to_native(sd)
    cfg = blip.infer_config(sd, image_size=size, preprocess=preprocess)
    return load_strict(build(cfg), blip.complete(sd, cfg), path)


def _open_clip_config(path: Path, arch: str | None, preprocess: dict | None):
    if arch is not None:
        from . import catalog

        if arch not in catalog.ARCHS:
            raise ClipBlipError(f"unknown architecture {arch!r}; known: {', '.join(sorted(catalog.ARCHS))}")
        return open_clip.config_from_open_clip(catalog.ARCHS[arch], preprocess)
    beside = path.parent / "open_clip_config.json"
    if beside.is_file():
        data = _read_json(beside)
        return open_clip.config_from_open_clip(data["model_cfg"], data.get("preprocess_cfg", preprocess))
    return None
