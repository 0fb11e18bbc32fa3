"""Make torchvision 0.28 importable on this torch build, for the open_clip / transformers references in tests.

torchvision's Python side registers fake kernels for `torchvision::nms` and `torchvision::qnms`, whose schemas
normally come from its C++ extension; the extension here does not match torch, so the schemas are missing and
`import torchvision` fails. Defining the two schemas first is enough for the transforms the tests use.
Only tests import this: the package itself never imports torchvision.
"""

import torch

_SIGNATURE = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _define_missing_ops() -> None:
    for name in ("nms", "qnms"):
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        except RuntimeError:
            try:
                torch.library.define(f"torchvision::{name}", _SIGNATURE)
            except RuntimeError:
                pass  # defined meanwhile (another import path got there first)


def import_open_clip():
    """Define the missing torchvision op schemas if needed, then import and return open_clip."""
    _define_missing_ops()
    import open_clip

    return open_clip
