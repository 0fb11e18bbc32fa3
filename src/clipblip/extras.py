"""What an optional part of clipblip needs beyond the core install, and the one-line error when it is missing.

`pip install clipblip` gives the models, checkpoints, tokenizers, preprocessing and the task commands; the rest
comes with extras (pyproject.toml): serve (fastapi, uvicorn, python-multipart), index (faiss), train (webdataset
for writing shards), eval (matplotlib, sacrebleu), parquet (pyarrow), onnx (onnx, onnxruntime), hf, hub, all.
A module that needs one imports it through `require` where the work starts (or at the top of a package that
cannot work without it), so that no core command imports it and a missing one is named with its extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ClipBlipError


def require(module: str, extra: str, what: str) -> ModuleType:
    """`module`, imported; a ClipBlipError saying which extra to install when it is not installed.

    what: the feature that needs it, as the user calls it ("clipblip serve"). A module that is installed but
    fails to import for another reason (one of its own dependencies missing, a broken build) raises as it is:
    installing the extra again would not fix that, and its own message says what would.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name not in (module, top):
            raise
        raise ClipBlipError(f"{what} needs the {extra} extra: pip install 'clipblip[{extra}]'") from None

