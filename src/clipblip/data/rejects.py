"""Rejects: the items a data job skipped, each with its reason, logged to a JSON-lines file as they happen.

`Rejects` extends `jobs.Skipped` (so anything that takes a `Skipped`, `pixel_batches` or the CLI's
report, takes a `Rejects`) with what a job over millions of items needs:

- a log file: one line {"id", "image", "reason"} per item, flushed per line, so a killed run keeps it;
- bounded memory: `items` holds only the first `keep` (for a summary), `len()` is the full count;
- resume: `truncate(offset)` drops the lines a killed run logged after a known point (see `shards.write_shards`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ClipBlipError
from ..jobs import Skipped


class Rejects(Skipped):
    """Skipped items: counted, the first `keep` kept in `items`, all of them appended to `path` (if given).

    append=False starts a fresh log (an old file at `path` is emptied); append=True continues one, counting
    the lines already there. Use it as a context manager, or call `close()`, to close the file.
    """

    def __init__(self, path: str | Path | None = None, *, keep: int = 20, append: bool = False):
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.keep = keep
        self._count = 0
        self._file = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # bytes: offsets are exact; append mode: copies in other processes never overwrite a line
                self._file = open(self.path, "ab+")
            except OSError as e:
                raise ClipBlipError(f"cannot write the rejects file {self.path}: {e.strerror}") from None
            if not append:
                self._file.truncate(0)
            self._recount(self._file.seek(0, os.SEEK_END))

    def __len__(self) -> int:
        return self._count

    def add(self, item, reason: str, *, image=None) -> None:
        """Record one skipped item: `item` its id, `image` where its image came from (a path, or None)."""
        self._count += 1
        if len(self.items) < self.keep:
            self.items.append((str(item), reason))
        if self._file is not None:
            line = {"id": str(item), "image": None if image is None else _describe(image), "reason": reason}
            self._file.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
            self._file.flush()  # a killed run keeps every line written so far

    def offset(self) -> int:
        """Where the log ends now (bytes); 0 without a file. `truncate(offset)` comes back to this point."""
        return self._file.tell() if self._file is not None else 0

    def truncate(self, offset: int) -> None:
        """Drop the lines logged after `offset` (from `offset()`) and count again what is left.

        An offset past the end of the file (the file was shortened by hand) keeps the whole file.
        """
        if self._file is None:
            return
        end = self._file.seek(0, os.SEEK_END)
        if offset < end:
            self._file.truncate(offset)
        self._recount(min(offset, end))

    def _recount(self, end: int) -> None:
        self._file.seek(0)
        lines = self._file.read(end).decode("utf-8", "replace").splitlines() if end else []
        self._count, self.items = 0, []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill mid-write: still one item
                row = {"id": "?", "reason": "unreadable line in the rejects log"}
            self._count += 1
            if len(self.items) < self.keep:
                self.items.append((str(row.get("id")), str(row.get("reason"))))
        self._file.seek(0, os.SEEK_END)

    def summary(self, limit: int = 5) -> str:
        """One line: how many were rejected, where they are listed, and the first few with their reasons."""
        if not self._count:
            return "no items rejected"
        where = f", all listed in {self.path}" if self.path is not None else ""
        first = "; ".join(f"{item}: {reason}" for item, reason in self.items[:limit])
        more = f"; and {self._count - min(limit, len(self.items))} more" if self._count > limit else ""
        return f"{self._count} item(s) rejected{where}. {first}{more}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Rejects:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # DataLoader workers get pickled copies: an open file cannot travel, its path can
        return {k: v for k, v in self.__dict__.items() if k != "_file"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _file=None)
        if self.path is not None:  # append-mode writes of whole lines do not interleave between processes
            self._file = open(self.path, "ab+")

    def __repr__(self) -> str:
        return f"Rejects({self._count} item(s), path={str(self.path) if self.path else None!r})"


def _describe(image) -> str:
    """A path as given; in-memory image data by its size (never the bytes themselves)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"
