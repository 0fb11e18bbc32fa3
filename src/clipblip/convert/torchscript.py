"""The tensors of a TorchScript archive (OpenAI's released .pt files), read as data: no TorchScript code runs.

`torch.jit.load` compiles the archive's code/ folder and runs it; a class's `__setstate__` there can call
`torch.from_file(..., shared=True)` and so read or overwrite any file the user can. We never look at code/: the
weights are in data.pkl, a pickle of the module tree (each module an object of a `__torch__.*` class whose state
is a dict of attribute -> value) whose tensors point into the archive's data/ folder. The unpickler below admits
only what that pickle needs and maps each of those names to an inert stand-in of our own: nothing from the archive
is called, not even torch's own rebuild functions, and every other global is refused by name.

Layout, as torch writes it: `<name>/data.pkl`, `<name>/data/<key>` (one raw, uncompressed storage per key),
`<name>/constants.pkl` (the code's constants), `<name>/code/...`, `<name>/byteorder` (absent before torch 1.12).
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import ClipBlipError

MAX_PICKLE_BYTES = 64 << 20  # data.pkl of ViT-bigG is under 1 MB; tensor bytes live in data/, not in the pickle

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _Inert:
    """Base of the stand-ins: a pickle may BUILD (set the state of) only a module."""

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"sets the state of a {type(self).__name__}, which no weights file does")


class _Module(_Inert):
    """Any `__torch__.*` object: records its state and does nothing else."""

    def __setstate__(self, state):
        self.state = state


class _StorageType(_Inert):
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage(_Inert):
    """A reference to `<name>/data/<key>`: `numel` items of `dtype`, read after unpickling."""

    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef(_Inert):
    def __init__(self, storage, offset, size, stride, *_):  # the rest: requires_grad, hooks, metadata
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without a storage")
        if not (_ints(size) and _ints(stride) and len(size) == len(stride) and _ints((offset,))):
            raise pickle.UnpicklingError(f"a tensor with size {size!r}, stride {stride!r}, offset {offset!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _ints(values) -> bool:
    return isinstance(values, tuple) and all(type(v) is int and v >= 0 for v in values)


def _dict(*_):
    return {}  # collections.OrderedDict(): a tensor's backward hooks, always empty in a saved module


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _TensorRef,
    ("collections", "OrderedDict"): _dict,
    # typed lists: a scripted module's List[int] (etc.) attributes
    **{("torch.jit._pickle", f"build_{kind}list"): list for kind in ("int", "double", "bool", "tensor")},
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Refused(Exception):
    """A global the archive's pickle asks for that a weights file never needs."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _Module
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        match pid:
            case ("storage", _StorageType(dtype=dtype), str(key), str(), int(numel)) if key.isdigit() and numel >= 0:
                return _Storage(key, dtype, numel)
        raise pickle.UnpicklingError(f"an unknown persistent id {str(pid)[:80]}")


def is_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") for n in z.namelist())


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archived module tree (parameters and buffers), by dotted name, on the CPU.

    A refused global raises ClipBlipError naming it; other damage raises what zipfile, pickle or torch raise (the
    caller names the file)."""
    with zipfile.ZipFile(path) as z:
        root = _root_name(z)
        if f"{root}/byteorder" in z.namelist() and _head(z, f"{root}/byteorder", 16).strip() != b"little":
            raise ClipBlipError(f"{path}: a big-endian TorchScript archive; re-save it on a little-endian machine")
        raw = _head(z, f"{root}/data.pkl", MAX_PICKLE_BYTES + 1)
        if len(raw) > MAX_PICKLE_BYTES:
            raise ClipBlipError(f"{path}: data.pkl is over {MAX_PICKLE_BYTES >> 20} MB; not a weights archive")
        try:
            top = _Unpickler(io.BytesIO(raw)).load()
        except _Refused as e:
            raise ClipBlipError(f"{path}: refused: its pickle calls {e}, which a weights file never needs "
                                "(nothing was run); use a checkpoint from a source you trust") from None
        if not isinstance(top, _Module):
            raise pickle.UnpicklingError("the pickle does not hold a module")
        refs: dict[str, _TensorRef] = {}
        _collect(top, "", refs)
        flat = {}
        return {name: _tensor(ref, _storage(z, root, ref.storage, flat)) for name, ref in refs.items()}


def _head(z: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """At most `limit` bytes of a member: a compressed member may claim any size and inflate past it."""
    with z.open(name) as f:
        return f.read(limit)


def _root_name(z: zipfile.ZipFile) -> str:
    roots = {n.split("/", 1)[0] for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")}
    if len(roots) != 1:
        raise zipfile.BadZipFile(f"expected one <name>/data.pkl, found {len(roots)}")
    return roots.pop()


def _collect(module: _Module, prefix: str, out: dict) -> None:
    """Tensors by dotted name, as a module's state_dict() names them; a submodule's under its attribute name."""
    state = module.state if isinstance(getattr(module, "state", None), dict) else {}
    for name, value in state.items():
        if isinstance(value, _TensorRef):
            out[f"{prefix}{name}"] = value
        elif isinstance(value, _Module):
            _collect(value, f"{prefix}{name}.", out)


def _storage(z: zipfile.ZipFile, root: str, st: _Storage, done: dict) -> torch.Tensor:
    """The storage as a flat tensor, read once however many tensors view it."""
    if st.key in done:
        flat = done[st.key]
        if flat.dtype != st.dtype or flat.numel() != st.numel:
            raise pickle.UnpicklingError(f"storage {st.key} is used with two types or sizes")
        return flat
    info = z.getinfo(f"{root}/data/{st.key}")
    nbytes = st.numel * st.dtype.itemsize
    # Stored, not compressed, as torch writes them: the bytes read are then bytes on disk, never an inflated bomb.
    if info.compress_type != zipfile.ZIP_STORED or info.file_size < nbytes:
        raise pickle.UnpicklingError(f"storage {st.key} is compressed or shorter than its {st.numel} items")
    with z.open(info) as f:
        data = bytearray(f.read(nbytes))
    if len(data) != nbytes:
        raise pickle.UnpicklingError(f"storage {st.key} ends early")
    done[st.key] = torch.frombuffer(data, dtype=st.dtype) if nbytes else torch.empty(0, dtype=st.dtype)
    return done[st.key]


def _tensor(ref: _TensorRef, flat: torch.Tensor) -> torch.Tensor:
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if math.prod(ref.size) and last >= flat.numel():
        raise pickle.UnpicklingError(f"a tensor of size {ref.size} reaches past its storage of {flat.numel()}")
    return flat.as_strided(ref.size, ref.stride, ref.offset)
