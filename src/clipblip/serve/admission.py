"""Admission by memory: a request's images are counted in the bytes their decoding takes, against one budget that
every request in flight shares, before any of them is decoded.

The upload size says nothing about the cost: a 1 MB PNG can be 6300x6300 pixels, 160 MB decoded. The header gives
size and mode, hence the cost, for the price of a few hundred bytes read. A request whose images fit what is left
of the budget goes ahead; one that fits the budget but not now gets 503 with Retry-After; one that could never fit
gets 413. Only decoding is counted: each image is reduced at once to the model's input (uint8 [3, S, S], a few
hundred KB), and what waits for the model is bounded by the batcher's queue.
"""

from __future__ import annotations

from contextlib import contextmanager

from fastapi import HTTPException

# Bytes per pixel that PIL keeps for a decoded image: 1 for these modes, 2 for I;16*, 4 for every other (RGB too)
_ONE_BYTE = ("1", "L", "P")
# 16- and 32-bit grayscale become uint8 through numpy arrays of up to 8 bytes a pixel, a few alive at once
_HIGH_DEPTH_EXTRA = 40


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """An upper bound on the memory that decoding an image of this size and PIL mode to RGB takes at its peak (a
    JPEG decoded in draft mode takes less): the decoded image, plus its RGB copy when it is not RGB already."""
    if mode.startswith("I") or mode == "F":
        per_pixel = (2 if mode.startswith("I;16") else 4) + _HIGH_DEPTH_EXTRA
    elif mode == "RGB":
        per_pixel = 4
    else:
        per_pixel = (1 if mode in _ONE_BYTE else 4) + 4
    return width * height * per_pixel


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


class Budget:
    """Bytes that the requests in flight may hold in decoding images. Only handlers on the event loop take and give
    (decoding threads do not), so no lock is needed."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("the budget must be at least 1 byte")
        self.limit, self.used = limit, 0

    @contextmanager
    def hold(self, nbytes: int):
        """Hold `nbytes` for the block, or refuse: 413 when they could never fit, 503 when they do not fit now."""
        if nbytes > self.limit:
            raise HTTPException(413, f"the images of this request decode to {_mb(nbytes)}, over the server's "
                                     f"budget of {_mb(self.limit)} (its --max-inflight-mb): send fewer or smaller "
                                     "images")
        if self.used + nbytes > self.limit:
            raise HTTPException(503, f"the server is decoding other images ({_mb(self.used)} of {_mb(self.limit)} "
                                     f"in use, this request needs {_mb(nbytes)}); retry shortly",
                                headers={"Retry-After": "1"})
        self.used += nbytes
        try:
            yield
        finally:
            self.used -= nbytes
