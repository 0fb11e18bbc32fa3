"""Import open_clip (a test-only reference) where the installed torchvision lacks its C++ ops.

open_clip imports torchvision, and torchvision's Python side registers fake kernels for `torchvision::nms` and
`torchvision::qnms` at import. When its compiled extension does not match the installed torch, those op schemas were
never defined and the import dies with "operator torchvision::nms does not exist". Defining the two schemas first
lets the import finish; nothing in these tests calls nms.
"""

import torch

_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _has_op(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def _load_compiled_ops() -> None:
    """Where torchvision's extension matches torch (a CUDA machine's own build), load it: it defines the real ops,
    and defining them here first would make its own registration abort the process."""
    import glob
    import importlib.util
    import os

    spec = importlib.util.find_spec("torchvision")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for lib in glob.glob(os.path.join(folder, "_C*.so")):
            try:
                torch.ops.load_library(lib)
            except (OSError, RuntimeError):  # built for another torch: undefined symbols
                pass


def define_missing_ops() -> None:
    """conftest calls this first thing: transformers imports torchvision too, whenever it is installed."""
    _load_compiled_ops()
    for name, schema in _SCHEMAS.items():
        if not _has_op(name):
            torch.library.define(f"torchvision::{name}", schema)


def import_open_clip():
    """The open_clip module, after defining torchvision's nms/qnms schemas if they are missing."""
    define_missing_ops()
    import open_clip

    return open_clip
