"""What each adapter reports about itself, for /metrics, /healthz and the log."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from plantwire_edge.source_clock import SourceClock


@dataclass
class AdapterStatus:
    device_id: str
    kind: str
    state: str = "starting"  # starting | connected | disconnected | auth_failed
    values: int = 0  # values reported to the node
    rejected: int = 0  # bad quality or not convertible to the metric's datatype
    malformed: int = 0  # payloads that could not be parsed (MQTT devices)
    unmapped: int = 0  # native values missing from their mapping table
    clock_flagged: int = 0  # device timestamps outside the sane range
    reconnects: int = 0
    recovered: int = 0  # OPC UA subscriptions continued (queue kept) after a lost session
    backfilled: int = 0  # OPC UA values read from the server's history after a new subscription
    connects: int = 0
    last_error: str = ""
    bad_points: dict[str, str] = field(default_factory=dict)  # tag/register/field -> reason
    since: float = field(default_factory=time.time)
    clock: SourceClock | None = None  # the device's clock, once it stamped a value itself
    clock_speed: float = 1.0  # of the gateway's clock: tolerance, jumps and period follow it

    def observe_clock(self, device_ts: int, arrival: int) -> SourceClock:
        """A value the device stamped itself (``device_ts``) arrived at gateway time
        ``arrival``; the device's clock (its ``fresh`` says whether this made a new estimate)."""
        if self.clock is None:
            self.clock = SourceClock(self.device_id, speed=self.clock_speed)
        self.clock.observe(device_ts, arrival)
        return self.clock

    def set_state(self, state: str, error: str = "") -> None:
        if state != self.state:
            self.state = state
            self.since = time.time()
        if error:
            self.last_error = error

    def bad(self, point: str, reason: str, log: logging.Logger) -> None:
        """Report a point that cannot be read; logged once per distinct reason."""
        if self.bad_points.get(point) != reason:
            self.bad_points[point] = reason
            log.warning("%s: bad point %s: %s", self.device_id, point, reason)


class Throttle:
    """Log a repeated problem once per ``period`` seconds per key, with the count since."""

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, log: logging.Logger, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last, suppressed = self._last.get(key, (-1e18, 0))
        if now - last >= self.period:
            extra = f" ({suppressed} more since)" if suppressed else ""
            log.warning(message + extra, *args)
            self._last[key] = (now, 0)
        else:
            self._last[key] = (last, suppressed + 1)
