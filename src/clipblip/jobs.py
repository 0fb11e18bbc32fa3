"""What every batch job shares: the list of items it skipped, the files it was given, and an ordered thread map.

Below both `tasks` and `data` (both run batch jobs), so neither imports the other for these.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ClipBlipError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
THREAD_PREFIX = "clipblip-input"


@dataclass
class Skipped:
    """Items a batch job could not use, with the reason for each."""
    items: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item, reason: str) -> None:
        self.items.append((str(item), reason))


def find_images(paths) -> list[Path]:
    """Files as given, and the image files (by suffix, recursively, sorted) of any directories."""
    found = []
    for p in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            found.append(p)
        else:
            raise ClipBlipError(f"{p}: no such file or directory")
    return found


def default_workers() -> int:
    """Decoding threads when the caller does not say: the CPUs this process may use, at most 4.

    Why 4: on a CPU-only run the model's own torch threads need the same cores, so more decoders mostly trade
    model time for decode time; and each decoding thread that runs a torch op large enough to go parallel gets
    its own OpenMP team, so threads multiply with cores (4 x T stays tolerable). With a GPU, decoding is the
    bound (one core turns ~150 640x480 JPEGs/s into 224 px pixels, bench/README.md): ask for more, `workers=`.
    """
    return min(4, available_cpus())


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))  # a container or taskset may allow fewer than os.cpu_count()
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ordered_map(fn, items, workers: int | None, ahead: int):
    """Yield fn(item) for each of `items` (any iterable, read lazily in the calling thread), in input order.

    workers: threads that call fn (None: `default_workers()`; 0: fn runs in the calling thread when the next
    result is asked for). The pool runs at most `ahead` items past the last one yielded, so at most that many
    results wait in memory and a generator input is read no further. An exception from fn is raised at its
    item's position. Closing the generator, or dropping it when the consumer raises (KeyboardInterrupt too),
    cancels the calls not started and joins the threads before it returns.
    """
    workers = default_workers() if workers is None else workers
    source = iter(items)
    if workers <= 0:
        yield from map(fn, source)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix=THREAD_PREFIX)
    try:
        pending = deque(pool.submit(fn, x) for x in itertools.islice(source, max(ahead, workers)))
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(fn, x) for x in itertools.islice(source, 1))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
