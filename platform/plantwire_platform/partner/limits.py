"""Request limits of one API process, held in memory: token buckets per key, backoff after
failures, and the throttle of the token endpoint built from them."""

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


class Backoff:
    """Exponential backoff per key after failures: the first ``free`` failures cost nothing;
    each one after holds the key back for twice as long as the one before (``base_s``,
    ``2 * base_s``, ... at most ``max_s``). An attempt while held back counts as a failure (it
    was not tried, but whoever keeps knocking waits longer). A success forgets the key; so does
    a quiet ``max_s`` after its last failure. At most ``max_keys`` keys are kept (beyond that,
    those not held back are forgotten first)."""

    def __init__(
        self,
        free: int = 3,
        base_s: float = 1.0,
        max_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.free, self.base_s, self.max_s, self._clock = free, base_s, max_s, clock
        self.max_keys = max_keys
        self._keys: dict[str, tuple[int, float, float]] = {}  # failures, held until, last

    def wait(self, key: str) -> float:
        """Seconds ``key`` is still held back (0: it may try)."""
        found = self._keys.get(key)
        if found is None:
            return 0.0
        now = self._clock()
        _, until, last = found
        if now - last >= self.max_s:
            del self._keys[key]
            return 0.0
        return max(0.0, until - now)

    def failed(self, key: str) -> float:
        """Count a failure of ``key``; returns how long it is now held back."""
        now = self._clock()
        failures, _, last = self._keys.get(key, (0, now, now))
        if now - last >= self.max_s:
            failures = 0
        failures += 1
        held = 0.0
        if failures > self.free:
            held = min(self.base_s * 2 ** min(failures - self.free - 1, 60), self.max_s)
        if len(self._keys) >= self.max_keys and key not in self._keys:
            self._keys = {k: v for k, v in self._keys.items() if v[1] > now}
        self._keys[key] = (failures, now + held, now)
        return held

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)


class TokenThrottle:
    """What stands between a token request and its secret check (scrypt, expensive on purpose):
    backoff per client id and per address after failures, token buckets per address and per
    client id, and a global bucket below what the server can hash, so that neither guessing one
    client's secret nor spraying many ids from many addresses gets far, and the server keeps the
    CPU to answer its clients."""

    def __init__(
        self,
        rate: float,
        burst: int,
        ip_rate: float,
        ip_burst: int,
        id_rate: float,
        id_burst: int,
        free_failures: int,
        backoff_max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.everyone = RateLimiter(rate, burst, clock, max_keys=1)
        self.per_ip = RateLimiter(ip_rate, ip_burst, clock)
        self.per_id = RateLimiter(id_rate, id_burst, clock)
        self.backoff = Backoff(free_failures, 1.0, backoff_max_s, clock)

    def admit(self, ip: str, client_id: str) -> float:
        """0 if a request for ``client_id`` from ``ip`` may have its secret checked now, else
        the seconds to wait. Refusals held back by failures count as failures."""
        held = [k for k in (f"ip:{ip}", f"id:{client_id}") if self.backoff.wait(k) > 0]
        if held:
            return max(self.backoff.failed(k) for k in held)
        for limiter, key in ((self.per_ip, ip), (self.per_id, client_id), (self.everyone, "")):
            wait = limiter.take(key)
            if wait > 0:
                return wait
        return 0.0

    def failed(self, ip: str, client_id: str) -> None:
        self.backoff.failed(f"ip:{ip}")
        self.backoff.failed(f"id:{client_id}")

    def succeeded(self, client_id: str) -> None:
        """A right secret forgets the id's failures (not the address's: one valid client must
        not clear the way for guesses from the same address)."""
        self.backoff.succeeded(f"id:{client_id}")
