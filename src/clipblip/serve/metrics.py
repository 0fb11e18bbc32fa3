"""Request counts, status codes and latency per endpoint, kept in memory for /metrics."""

from __future__ import annotations

import math
import threading
from collections import Counter, deque

WINDOW = 2048  # latency percentiles are over each endpoint's most recent requests


def percentile(values, q: float) -> float | None:
    """The q-quantile (0..1) by the nearest-rank method; None for no values."""
    s = sorted(values)
    if not s:
        return None
    return s[max(0, math.ceil(q * len(s)) - 1)]


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # endpoint -> count
        self.statuses: dict[str, Counter] = {}  # endpoint -> {status code: count}
        self.latency: dict[str, deque] = {}  # endpoint -> recent latencies in seconds
        self.in_flight = 0  # requests started and not yet answered (only the event loop changes it)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[endpoint] += 1
            self.statuses.setdefault(endpoint, Counter())[status] += 1
            self.latency.setdefault(endpoint, deque(maxlen=WINDOW)).append(seconds)

    def snapshot(self) -> dict:
        with self._lock:
            out = {}
            for ep, n in sorted(self.requests.items()):
                lat = list(self.latency[ep])
                out[ep] = {"requests": n, "status": {str(k): v for k, v in sorted(self.statuses[ep].items())},
                           "latency_ms": {"p50": _ms(percentile(lat, 0.5)), "p99": _ms(percentile(lat, 0.99)),
                                          "window": len(lat)}}
            return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
