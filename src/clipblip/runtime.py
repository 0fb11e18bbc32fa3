"""Where a model runs and at what precision: the one rule, decided here and nowhere else.

    clipblip.load(source, device="auto", precision="auto")

device
    "auto": the first CUDA GPU when torch sees one, else the CPU. Or "cpu", "cuda", "cuda:N", "mps" (Apple).
precision
    "fp32"  float32 weights and activations (what every parity test checks).
    "bf16"  bfloat16 weights and activations; on any device. Fast on GPUs and on CPUs with native bf16 (AMX or
            AVX512-BF16); elsewhere the CPU emulates it, slower than fp32.
    "fp16"  float16 weights and activations; GPUs only (CPUs have no fast fp16 matmul).
    "int8"  CPU only: the Linear layers' weights stored as int8 (a scale per output channel) and their inputs
            quantized at run time (torch's dynamic quantization, `torch.ao.quantization.quantize_dynamic`: see
            `_quantize_int8` for why not torchao, and why the image tower's first block stays float); the rest
            (embeddings, norms, attention products, convolutions) stays float32.
    "auto"  bf16 on CUDA (fp16 on a GPU without bf16) and on a CPU whose flags show native bf16 (amx_bf16 or
            avx512_bf16, read from /proc/cpuinfo); fp32 everywhere else. int8 is never chosen for you: it trades
            accuracy (see the README's table) for speed, and that is the user's call.
    $CLIPBLIP_DEVICE and $CLIPBLIP_PRECISION, when set, replace "auto" (the test suite pins cpu and fp32 so).

A model tells where it runs from its weights: `model.device`, `model.dtype` (what activations are computed in),
`model.precision`. Task functions move their inputs to `model.device` (the towers cast pixels to their dtype), and
return float32 results on the CPU: the models' outputs (features, ITM and LM logits) are float32 at any precision.
A device that is not there, or a precision it cannot run, is an error that says what is available.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ClipBlipError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of activations (and of weights, but for int8's quantized Linear weights)."""
        return _DTYPES[self.precision]

    def __str__(self) -> str:
        return f"{self.device} {self.precision}"


@functools.cache
def _cpuinfo(*keys: str) -> str | None:
    """The value of the first line of /proc/cpuinfo (Linux) that starts with one of `keys`; None where there is
    none or the file cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(keys):
            return line.split(":", 1)[1].strip()
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (Linux); empty where they cannot be read."""
    return frozenset((_cpuinfo("flags", "Features") or "").split())


def cpu_model() -> str | None:
    """The CPU's model name as the kernel reports it (what `lscpu` shows as "Model name"); None where unknown."""
    return _cpuinfo("model name")


def cpu_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (Intel AMX or AVX512-BF16; AMD Zen 4 has the latter)."""
    return any(f in cpu_flags() for f in _BF16_FLAGS)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ClipBlipError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ClipBlipError(f"device {device!r}: torch sees no CUDA GPU here (this torch is {torch.__version__}"
                                f"); use --device cpu, or install a CUDA build of torch")
        if dev.index is not None and dev.index >= n:
            raise ClipBlipError(f"device {device!r}: there are {n} CUDA GPU(s) here, cuda:0 to cuda:{n - 1}")
        return torch.device("cuda", dev.index or 0)
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ClipBlipError("device 'mps': Apple's Metal backend is not available here; use --device cpu")
        return dev
    if dev.type != "cpu":
        raise ClipBlipError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and cpu_native_bf16():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ClipBlipError(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise ClipBlipError("fp16 needs a GPU (CPUs have no fast fp16 matmul); on the CPU use bf16, int8 or fp32")
    if precision == "int8" and device.type != "cpu":
        raise ClipBlipError(f"int8 runs on the CPU only; on {device.type} use bf16 or fp16")
    return precision


def resolve(device: str | torch.device = "auto", precision: str = "auto") -> Runtime:
    """The runtime for these settings; "auto" first takes $CLIPBLIP_DEVICE / $CLIPBLIP_PRECISION when set."""
    if device == "auto":
        device = os.environ.get("CLIPBLIP_DEVICE") or "auto"
    if precision == "auto":
        precision = os.environ.get("CLIPBLIP_PRECISION") or "auto"
    dev = resolve_device(device)
    return Runtime(dev, resolve_precision(precision, dev))


def describe() -> str:
    """One line: what `auto` resolves to on this machine, and why."""
    rt = resolve()
    if rt.device.type == "cuda":
        why = [torch.cuda.get_device_name(rt.device)]
    else:
        flags = [f for f in _BF16_FLAGS if f in cpu_flags()]
        why = [f"CPU {'with ' + ', '.join(flags) if flags else 'without native bf16'}"]
    why += [f"${v}={os.environ[v]}" for v in ("CLIPBLIP_DEVICE", "CLIPBLIP_PRECISION") if os.environ.get(v)]
    return f"auto: {rt} ({'; '.join(why)})"


def apply(model: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    """Put `model` (float32, on the CPU, as loaded) on the runtime's device and precision; returns it."""
    model = model.to(rt.device)
    if rt.precision in ("bf16", "fp16"):
        model = model.to(rt.dtype)
    elif rt.precision == "int8":
        _quantize_int8(model)
    return model


def _quantize_int8(model: torch.nn.Module) -> None:
    # torch's own dynamic quantization (fbgemm / x86 kernels), not torchao: on the CPU in eager mode torchao's
    # int8 Linear ran a 768x3072x768 MLP at 0.9x the speed of fp32 here, torch's at 1.9x (bench/README.md).
    import warnings

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        raise ClipBlipError(f"int8 needs torch's dynamic quantization, which torch {torch.__version__} no longer "
                            "has; use --precision bf16 or fp32") from None
    # One weight scale per output channel: with one per tensor, the shipped BLIP's greedy captions were 82% identical
    # to fp32's on 100 Shapes scenes, 88% per channel. The image tower's first block stays float: quantizing
    # the activations that come straight from the patch embedding cost the most (93% identical without it);
    # keeping the first layer of a network in float is the usual practice.
    spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.startswith("visual.blocks.0.")}
    with warnings.catch_warnings():  # its deprecation notices, once per layer
        warnings.simplefilter("ignore")
        quantize_dynamic(model, spec, inplace=True)
