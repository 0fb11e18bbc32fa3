"""Writing files so that a reader (or a resumed run) sees the old file or the new one, never half of one.

`atomic_path` is the one way clipblip replaces a file or a folder: the new content goes to a temporary name in the
same folder (a rename across filesystems is a copy), is flushed to disk, and is renamed over the target; the
folder is flushed too, so the rename itself survives a power cut. A run killed while writing leaves only a
`.NAME.PID.tmp`, which nothing reads and the next write of that name replaces.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: Path) -> Path:
    """The temporary name a write of `path` goes to: hidden, in the same folder, one per process (ranks of one
    job may write the same file)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Flush `tmp` (a file, or a folder and its files) to disk and rename it to `path`."""
    if tmp.is_dir():
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync(f)
        shutil.rmtree(path, ignore_errors=True)  # a folder cannot be renamed over a non-empty one
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path):
    """Yield the temporary path to write `path` to (a file or a folder); on success it replaces `path`, on error
    it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    _remove(tmp)  # a leftover of a killed run of this process id
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_write(path, mode: str = "w", **kwargs):
    """Yield `path` opened for writing (`mode` "w" or "wb"); it replaces `path` when the block ends without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes a whole file: mode 'w' or 'wb', not {mode!r}")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def write_atomic(path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8)."""
    with atomic_write(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
