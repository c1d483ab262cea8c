"""Per-client rate limits of the partner API: a token bucket per client, held in memory by
one API process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """``rate`` requests per second per key with bursts up to ``burst``. At most ``max_keys``
    buckets are kept: beyond that, buckets that have refilled completely are forgotten (a new
    bucket starts full, so forgetting them changes nothing)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.rate, self.burst, self._clock, self.max_keys = rate, burst, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)

    def take(self, key: str) -> float:
        """0 if the request may pass, else the seconds to wait before retrying."""
        now = self._clock()
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            refill_s = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill_s}
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """The ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait_s)))
