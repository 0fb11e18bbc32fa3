"""What every command shares: the common options, a model from the arguments, reporting, exit codes.

Exit codes: 0 all done; 1 an error (one line on stderr, no traceback); 2 bad usage; 3 done, but some inputs
were skipped (each listed on stderr, or under "skipped" with --json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from contextvars import ContextVar
from pathlib import Path

from ..errors import ClipBlipError, ClipBlipWarning

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3
# The models the running command has loaded (by the name it was given), for `report` and the embedded-model note.
_LOADED: ContextVar[list[str] | None] = ContextVar("clipblip_cli_loaded", default=None)
SHAPES_NOTE = ("{name} is a small model trained on the generated Shapes world (shapes and colours only); for other "
               "images pass a real checkpoint with -m PATH or a catalog name (`clipblip models`; README: "
               "\"Sources clipblip.load accepts\")")


def add_common(p: argparse.ArgumentParser, model: str | None = "clip") -> None:
    """--json, and for a command that runs one model: the model, its batches and the runtime options.

    `model` is the family whose embedded model is the default (None: the command names its models itself)."""
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if model:
        from ..catalog import DEFAULT

        p.add_argument("--model", "-m", default=DEFAULT[model],
                       help=f"checkpoint path, directory, or catalog name (default: the embedded {DEFAULT[model]})")
        p.add_argument("--arch", help="architecture of a bare open_clip file, e.g. ViT-B-32")
        p.add_argument("--batch-size", type=int, default=32, help="images or texts per model call (default 32)")
        p.add_argument("--fast", action="store_true", help="fast JPEG decode (DCT downscale; see docs)")
        p.add_argument("--strict-vocab", action="store_true",
                       help="a text with words outside a closed vocabulary (the Shapes models) is an error, not "
                            "a warning")
        add_runtime(p)


def add_runtime(p: argparse.ArgumentParser) -> None:
    """Where and how the models of a command run (the rule for "auto" is in clipblip/runtime.py)."""
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                   help="auto: bf16 on a GPU and on a CPU with native bf16 (AMX, AVX512-BF16), else fp32; fp16 is "
                        "GPU only, int8 CPU only (`clipblip --version` shows what auto is here)")
    g.add_argument("--threads", type=int, default=0, help="torch (and faiss) CPU threads (default 0: their choice)")


def add_workers(p: argparse.ArgumentParser) -> None:
    """For commands that read many images: decoding threads, overlapped with the model."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="threads that decode and preprocess images ahead of the model (default: min(4, CPUs); "
                        "0: decode in the main thread)")


def set_threads(args, faiss: bool = False) -> None:
    """Apply --threads to torch (and to faiss, for the commands that search with it)."""
    n = getattr(args, "threads", 0)
    if n:
        import torch

        torch.set_num_threads(n)
        if faiss:
            from ..index.kinds import faiss_lib  # the index extra's one-line error when faiss is missing

            faiss_lib().omp_set_num_threads(n)


@contextlib.contextmanager
def command_run():
    """The frame of one command: clipblip's warnings as one `clipblip: warning:` line each on stderr (Python's
    format takes two), and a record of the models it loads (see `report`)."""
    shown, token = warnings.showwarning, _LOADED.set([])

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ClipBlipWarning):
            print(f"clipblip: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ClipBlipWarning)  # the tokenizers say each thing once themselves
            warnings.showwarning = show
            yield
    finally:
        _LOADED.reset(token)


def load_model(args, source=None):
    """The model named by `source` (default --model), on the device and at the precision the options say.

    An embedded Shapes model is announced once per command, in one line on stderr: it knows only its world."""
    from ..loading import load

    set_threads(args)
    name = str(source if source is not None else args.model)
    model = load(name, arch=getattr(args, "arch", None), device=args.device, precision=args.precision,
                 strict_vocab=getattr(args, "strict_vocab", False))
    note_embedded(name)
    if getattr(args, "fast", False):
        from dataclasses import replace

        model.preprocess = replace(model.preprocess, fast=True)
    return model


def note_embedded(*names) -> None:
    """Record the models a command uses; the first embedded Shapes model among them is announced, once per command,
    in one line on stderr (commands that load their models themselves call this with their names)."""
    from ..catalog import EMBEDDED

    loaded = _LOADED.get()
    if loaded is None:  # not inside a command: the library says nothing
        return
    for name in map(str, names):
        if name in EMBEDDED and not any(n in EMBEDDED for n in loaded):
            print(f"clipblip: note: {SHAPES_NOTE.format(name=name)}", file=sys.stderr)
        loaded.append(name)


def require_blip(model, what: str) -> None:
    if model.config.family != "blip":
        raise ClipBlipError(f"{what} needs a BLIP model (see `clipblip models --family blip`)")


def listed(items, path) -> list[str]:
    """Items given on the command line, then the non-empty lines of `path` (if any)."""
    out = list(items or [])
    if path:
        try:
            out += [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        except OSError as e:
            raise ClipBlipError(f"cannot read {path}: {e.strerror}") from None
    return out


def report(result: dict, skipped, as_json: bool, lines) -> int:
    """Print the result (JSON or text lines) and the skipped items; the exit code says whether any were skipped.

    The models the command loaded are named: a "model" field in JSON, a line on stderr before the text (stdout
    keeps one line per result)."""
    models = " + ".join(_LOADED.get() or [])
    if as_json:
        head = {"model": models} if models and "model" not in result else {}
        print(json.dumps({**head, **result, "skipped": [{"item": i, "error": e} for i, e in skipped.items]},
                         indent=2))
    else:
        if models:
            print(f"model: {models}", file=sys.stderr)
        for line in lines:
            print(line)
    for item, error in skipped.items:
        print(f"skipped {item}: {error}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} input(s) skipped", file=sys.stderr)
    return EXIT_PARTIAL if skipped else EXIT_OK
