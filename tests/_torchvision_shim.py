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


def define_missing_ops() -> None:
    """conftest calls this first thing: transformers imports torchvision too, whenever it is installed."""
    for name, schema in _SCHEMAS.items():
        if not _has_op(name):
            torch.library.define(f"torchvision::{name}", schema)


def import_open_clip():
    """The open_clip module, after defining torchvision's nms/qnms schemas if they are missing."""
    define_missing_ops()
    import open_clip

    return open_clip
