"""`clipblip`: one entry point, a subcommand per task; one module per command group, shared options in common.py.

Exit codes: see common.py (0 done, 1 error, 2 usage, 3 done with skipped inputs).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import ClipBlipError
from .common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, command_run

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "main", "parser"]


class _Version(argparse.Action):
    """`clipblip --version`: the version, torch's, and what device and precision "auto" picks on this machine."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="show the version and what --device/--precision "
                                                             "auto resolve to here, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        import torch

        from .. import runtime
        from ..version import __version__

        print(f"clipblip {__version__} (torch {torch.__version__}); {runtime.describe()}")
        parser.exit()


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless it names it already or there is none (None, a flag);
    descriptions are shown as written (`data shapes` lays its out in lines)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if action.option_strings and default is not None and default is not False \
                and default != argparse.SUPPRESS and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: add_subparsers makes its children of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def parser() -> argparse.ArgumentParser:
    from . import blip, capfilt, compare, data, features, index, models, score, serve, train

    ap = _Parser(prog="clipblip", description="CLIP and BLIP: models, checkpoints, applications")
    ap.add_argument("--version", action=_Version)
    sub = ap.add_subparsers(dest="command", required=True)
    for group in (models, features, blip, compare, train, capfilt, data, score, index, serve):
        group.add_parsers(sub)
    return ap


def main(argv=None) -> int:
    import torch

    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["clipblip", *argv])  # as given, shell-quoted (compare's report shows it)
    try:
        with command_run():
            if getattr(args, "grad", False):
                return args.run(args)
            with torch.inference_mode():
                return args.run(args)
    except ClipBlipError as e:
        print(f"clipblip: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # an output path that cannot be written, a full disk
        print(f"clipblip: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("clipblip: interrupted", file=sys.stderr)
        return 130

