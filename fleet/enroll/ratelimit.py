"""A per-client token bucket for the public enrollment endpoint (in memory: per API process).

>>> limiter = RateLimiter(per_minute=2)
>>> [limiter.check("10.0.0.1", now=0.0) for _ in range(3)]
[0.0, 0.0, 30.0]
>>> limiter.check("10.0.0.2", now=0.0), limiter.check("10.0.0.1", now=30.0)
(0.0, 0.0)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RateLimiter:
    """``check(key)`` returns 0 when the request may go on, else the seconds to wait."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def check(self, key: str, *, now: float | None = None) -> float:
        moment = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.capacity, moment))
            tokens = min(self.capacity, tokens + (moment - at) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, moment)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return wait
