"""Writing files so that a reader (or a resumed run) sees the old file or the new one, never half of one; reading
the files a dataset names with a bound on their size.

`atomic_path` is the one way clipblip replaces a file or a folder: the new content goes to a temporary name in the
same folder (a rename across filesystems is a copy), is flushed to disk, and is renamed over the target; the
folder is flushed too, so the rename itself survives a power cut. A run killed while writing leaves only a
`.NAME.PID.tmp`, which nothing reads and the next write of that name replaces.

`save_safetensors` writes tensors that way too, with the mode every other file gets (0o666 less the umask):
safetensors' own `save_file` goes through a temporary file created 0600, so weights came out private whatever the
umask said.

`read_bounded` is the one way clipblip reads a file a dataset names (an image, a caption sidecar): regular files
only, at most a cap of bytes (`item_limit()`, $CLIPBLIP_MAX_ITEM_MB, 64 MB by default), so a hostile list of
paths costs a rejected item, never a hang on a FIFO or the memory a read of /dev/zero takes.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

from .errors import ClipBlipError

ITEM_LIMIT_ENV = "CLIPBLIP_MAX_ITEM_MB"
DEFAULT_ITEM_MB = 64
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


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


def save_safetensors(tensors: dict, path, metadata: dict | None = None) -> None:
    """`safetensors.torch.save_file`, atomically and with the mode `open()` would give a new file."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, new_file_mode())


def new_file_mode() -> int:
    """The mode `open()` gives a new file here: 0o666 less the process's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux 4.7+ shows it; setting it to read it would race with threads creating files meanwhile
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------------------ bounded reads


def item_limit() -> int:
    """The most bytes one data item (an image file a dataset names, a member of a shard) may have:
    $CLIPBLIP_MAX_ITEM_MB megabytes, 64 by default. A dataset is a list of files someone else chose; without a
    cap, one entry naming a 50 GB file (or a device that never ends) costs the machine's memory."""
    raw = os.environ.get(ITEM_LIMIT_ENV)
    if raw is None:
        return DEFAULT_ITEM_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not 0 < mb <= 1 << 20:  # also refuses nan and inf
        raise ClipBlipError(f"${ITEM_LIMIT_ENV}={raw!r}: set it to the size cap of one data item in megabytes, a "
                            "number above 0 (at most 1048576), or unset it for the default of "
                            f"{DEFAULT_ITEM_MB}")
    return max(1, int(mb * (1 << 20)))


def read_bounded(path, limit: int) -> bytes:
    """The bytes of `path`, a regular file (a symlink to one is fine) of at most `limit` bytes.

    Anything else raises OSError, as open() does: a FIFO, a device, a socket or a folder (errno EINVAL, or
    EISDIR), a file over `limit` (EFBIG). The type is checked before opening, since opening some devices acts
    (a tape rewinds, a FIFO waits for a writer), and again on the open descriptor, so what was checked is what
    is read; at most limit + 1 bytes are read, so a file that grows after the check, or a /proc file that says
    it is empty, is still caught.
    """
    _check_regular(os.stat(path), path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        _check_regular(st, path)
        if st.st_size > limit:
            raise _too_large(path, limit)
        chunks, total, want = [], 0, st.st_size + 1  # one read for a file that is what fstat says
        while total <= limit:
            chunk = os.read(fd, min(want, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total, want = total + len(chunk), 1 << 20
    finally:
        os.close(fd)
    if total > limit:
        raise _too_large(path, limit)
    return b"".join(chunks)


def read_item(path, what: str = "file") -> bytes:
    """`read_bounded` at `item_limit()`, a failure as one ClipBlipError that names `path` and says what to do."""
    try:
        return read_bounded(path, item_limit())
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            reason = "no such file"
        elif e.errno == errno.EFBIG:
            reason = f"{e.strerror}; if you trust it, raise ${ITEM_LIMIT_ENV}"
        else:
            reason = e.strerror or str(e)
        raise ClipBlipError(f"cannot read {what} {os.fspath(path)!r}: {reason}") from None


def _check_regular(st: os.stat_result, path) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, "it is a directory, not a file", os.fspath(path))
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a plain file")
    raise OSError(errno.EINVAL, f"not a regular file but {kind}; only regular files are read", os.fspath(path))


def _too_large(path, limit: int) -> OSError:
    return OSError(errno.EFBIG, f"larger than the cap of {limit} bytes on one item", os.fspath(path))
