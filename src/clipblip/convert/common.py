"""Helpers shared by the converters: key renaming by ordered regex tables, fused-projection splits and joins."""

from __future__ import annotations

import re

import torch

# Pillow's resampling codes, as Hugging Face image processors store them
HF_RESAMPLE = {"bilinear": 2, "bicubic": 3}


def resample_name(preprocessor: dict) -> str:
    """The interpolation a Hugging Face preprocessor_config.json names (bicubic when it names none we know)."""
    return {code: name for name, code in HF_RESAMPLE.items()}.get(preprocessor.get("resample", 3), "bicubic")


StateDict = dict[str, torch.Tensor]


def rename(sd: StateDict, rules: list[tuple[str, str]]) -> StateDict:
    """Apply every (pattern, replacement) rule in order to each key."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out = {}
    for key, value in sd.items():
        for pattern, repl in compiled:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def fuse(sd: StateDict, groups: dict[str, tuple[str, ...]]) -> StateDict:
    """Concatenate separate projections (q, k, v) into one fused weight: {'x.qkv': ('x.q', 'x.k', 'x.v')}."""
    sd = dict(sd)
    for target, parts in groups.items():
        for suffix in ("weight", "bias"):
            keys = [f"{p}.{suffix}" for p in parts]
            if all(k in sd for k in keys):
                sd[f"{target}.{suffix}"] = torch.cat([sd.pop(k) for k in keys])
    return sd


def unfuse(sd: StateDict, groups: dict[str, tuple[str, ...]]) -> StateDict:
    """The inverse of `fuse`: split a fused weight into equal parts."""
    sd = dict(sd)
    for source, parts in groups.items():
        for suffix in ("weight", "bias"):
            key = f"{source}.{suffix}"
            if key in sd:
                for name, chunk in zip(parts, sd.pop(key).chunk(len(parts))):
                    sd[f"{name}.{suffix}"] = chunk.contiguous()
    return sd


def block_indices(sd: StateDict, prefix: str) -> list[int]:
    """Sorted block numbers N found in keys `{prefix}N.…`."""
    found = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return sorted(found)


def projection_groups(sd: StateDict, towers: tuple[str, ...], cross: bool = False) -> dict[str, tuple[str, ...]]:
    """`fuse`/`unfuse` groups for every block of `towers`: self-attention q, k, v -> qkv, and with `cross` the
    cross-attention k, v -> kv (our fused projections; foreign layouts keep them separate)."""
    groups = {}
    for tower in towers:
        for i in block_indices(sd, f"{tower}.blocks."):
            p = f"{tower}.blocks.{i}"
            groups[f"{p}.attn.qkv"] = (f"{p}.attn.q", f"{p}.attn.k", f"{p}.attn.v")
            if cross:
                groups[f"{p}.xattn.kv"] = (f"{p}.xattn.k", f"{p}.xattn.v")
    return groups


def drop(sd: StateDict, patterns: tuple[str, ...]) -> StateDict:
    """Remove keys that carry no weights we use (buffers recomputed at run time), by regex."""
    return {k: v for k, v in sd.items() if not any(re.search(p, k) for p in patterns)}


def invert(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The inverse of literal rename rules (escaped literal patterns, optionally anchored by ^ and $)."""
    out = []
    for pattern, repl in reversed(rules):
        start = "^" if pattern.startswith("^") else ""
        end = "$" if pattern.endswith("$") else ""
        literal = pattern[len(start): len(pattern) - len(end)].replace("\\.", ".")
        out.append((start + re.escape(repl) + end, literal))
    return out
