"""How far a device's clock is from the gateway's, measured from the timestamps it sends.

Each value a device stamps itself arrives some time after it was stamped, so
``device timestamp - gateway time at arrival`` is the clock's offset less that delay: the
largest difference seen over a period of ``PERIOD_S`` wall seconds is the offset's estimate
(the least delayed value). When two periods' estimates differ by more than ``JUMP_MS`` the
device's clock jumped (set by hand, a battery-backed clock reset, a time server correcting a
drift of minutes): the jump is counted and logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PERIOD_S = 10.0
JUMP_MS = 5_000


@dataclass
class SourceClock:
    """The offset of one device's clock (see the module docstring)."""

    device_id: str
    offset_ms: int | None = None
    """The estimate of the last complete period (None until one has passed)."""
    jumps: int = 0
    _period_max: int | None = None
    _period_end: float = field(default_factory=lambda: time.monotonic() + PERIOD_S)

    def observe(self, device_ts: int, arrival: int) -> None:
        """A value stamped ``device_ts`` by the device arrived at gateway time ``arrival``."""
        difference = device_ts - arrival
        if self._period_max is None or difference > self._period_max:
            self._period_max = difference
        if self.offset_ms is None or time.monotonic() >= self._period_end:
            self._close()

    def _close(self) -> None:
        estimate = self._period_max
        if estimate is None:
            return
        previous = self.offset_ms
        if previous is not None and abs(estimate - previous) > JUMP_MS:
            self.jumps += 1
            log.warning(
                "%s: the device's clock jumped by %+.1f s (offset %+.1f s -> %+.1f s)",
                self.device_id,
                (estimate - previous) / 1000,
                previous / 1000,
                estimate / 1000,
            )
        self.offset_ms = estimate
        self._period_max = None
        self._period_end = time.monotonic() + PERIOD_S
