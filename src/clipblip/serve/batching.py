"""Dynamic micro-batching: requests from concurrent clients share one model call.

One worker thread owns the models (PyTorch runs best with one caller, and the event loop stays free for I/O).
Handlers `await batcher.submit(key, items)`; the worker takes the oldest waiting item, gathers the items with the
same key (same task, same labels / candidate answers) that arrive within `wait_s` of it, up to `max_batch`, runs
them as one batch and resolves each item's future on the event loop. The window is skipped when `arriving()`
says no other request is on its way (a lone client pays no wait). The queue is bounded: a submit that would
overflow it raises `QueueFull` at once (the app answers 503), so overload never turns into a hang.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

# run(key, items) -> one result per item, in order
Runner = Callable[[Hashable, list], list]


class QueueFull(Exception):
    """The batcher already holds `max_queue` items."""


@dataclass
class _Item:
    key: Hashable
    value: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, run: Runner, max_batch: int = 32, wait_s: float = 0.005, max_queue: int = 256,
                 arriving: Callable[[], int] | None = None):
        """`arriving()`: how many requests may still submit soon (the server's requests in flight, less those
        waiting here); None: always wait the window."""
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1")
        self.run, self.max_batch, self.wait_s, self.max_queue = run, max_batch, wait_s, max_queue
        self.arriving = arriving
        self.submitters = 0  # submit() calls not yet answered
        self.batch_sizes: dict[str, Counter] = {}  # task name -> {batch size: count}
        self._pending: list[_Item] = []  # oldest first; at most max_queue, so scanning it is cheap
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="clipblip-batcher", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        return len(self._pending)

    async def submit(self, key: Hashable, items: list) -> list:
        """Results for `items` (each batched with other callers' items of the same key); QueueFull if no room."""
        loop = asyncio.get_running_loop()
        queued = [_Item(key, v, loop.create_future(), loop) for v in items]
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._pending) + len(queued) > self.max_queue:
                raise QueueFull(f"the queue is full ({len(self._pending)} of {self.max_queue} items waiting)")
            self._pending += queued
            self.submitters += 1
            self._cond.notify()
        try:
            return list(await asyncio.gather(*(q.future for q in queued)))
        finally:
            self.submitters -= 1

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _loop(self) -> None:
        while self._step():
            pass

    def _step(self) -> bool:
        """Run the next batch; False once closed with nothing left. The batch lives in this frame only, so that
        the worker holds none of its items (their images, their results) while it waits for the next."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return False
            batch = self._gather()
        self._run(batch)
        return True

    def _gather(self) -> list[_Item]:
        """Up to max_batch items of the oldest item's key, waiting until wait_s after that item arrived (called
        with the lock held; waiting releases it so that handlers can add items)."""
        first = self._pending[0]
        deadline = first.arrived + self.wait_s
        while sum(i.key == first.key for i in self._pending) < self.max_batch and not self._closed:
            if self.arriving is not None and self.arriving() <= 0:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        batch = [i for i in self._pending if i.key == first.key][: self.max_batch]
        taken = set(map(id, batch))
        self._pending = [i for i in self._pending if id(i) not in taken]
        return batch

    def _run(self, batch: list[_Item]) -> None:
        name = batch[0].key[0] if isinstance(batch[0].key, tuple) else str(batch[0].key)
        self.batch_sizes.setdefault(name, Counter())[len(batch)] += 1
        try:
            results = self.run(batch[0].key, [i.value for i in batch])
        except Exception as e:
            if len(batch) > 1:  # one bad item must not fail its neighbours: retry each alone
                for item in batch:
                    self._run([item])
                return
            results = [e]
        for item, result in zip(batch, results):
            item.loop.call_soon_threadsafe(_resolve, item.future, result)


def _resolve(future: asyncio.Future, result) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
