"""How far a device's clock is from the gateway's, measured from the timestamps it sends.

Each value a device stamps itself arrives some time after it was stamped, so
``device timestamp - gateway time at arrival`` is the clock's offset less that delay: the
largest difference seen over a period of ``PERIOD_S`` seconds of the gateway's clock is the
offset's estimate (the least delayed value). On an accelerated clock (a simulation at
``speed``) the period is ``PERIOD_S / speed`` wall seconds, so that a skewed clock is corrected
after the same simulated time at any speed, but at least ``PERIOD_MIN_WALL_S``: the least
delayed value must come from several OPC UA publish responses (100 ms by default), or the
estimate is one late delivery's delay (times the speed) off (with 0.15 wall s at 600x under
load, a 90 s offset was once estimated 31 s short for a period); and on an accelerated clock
at least ``PERIOD_MIN_VALUES`` values. When two periods' estimates differ
by more than :func:`jump_for` (``JUMP_MS``; on an accelerated clock at least ``JUMP_WALL_S`` of
delivery delay at its speed, which a period's estimate may carry) the device's clock jumped
(set by hand, a battery-backed clock reset, a time server correcting a drift of minutes): the
jump is counted and logged. A new estimate within tolerance of the correction in use moves it
only up (a less delayed value); one that is further from it replaces it.

One time line per device: when the offset is larger than :attr:`SourceClock.tolerance_ms`
(a clock minutes off, or drifting), the gateway corrects the device's timestamps by it
(:attr:`SourceClock.correction_ms`), so that its values line up with the sessions the gateway
stamps; the correction is published as the device's metric ``Clock/Offset`` (milliseconds,
device time = published time + offset; in its birth and at every new estimate, and a last 0
when the clock is back within tolerance), so the device's own time stays known. A smaller offset
is the delivery delay or an honest clock's error: timestamps are left as they are. A clock
ahead is certain from its first value (nothing arrives before it was stamped); a clock behind
only from a whole period's least delayed value, since a device's first values may be old ones
it kept (a backlog, an OPC UA history read), and only beyond :func:`behind_tolerance_for` the
speed: a clock behind and a delivery delay look the same, and on a loaded machine the gateway
can take every value of a whole period late (at 600x with the load at 25 on 2 cores, the five
MQTT stations of the adversarial scenario, honest clocks all, arrived 55-70 simulated s late
for more than a period at once, 0.1 wall s: taken for clocks a minute behind, their state
changes were stamped up to a minute late and their availability was 2.5-9 points off).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PERIOD_S = 10.0
"""Seconds of the gateway's clock over which an estimate is made."""
PERIOD_MIN_WALL_S = 0.5
"""...and at least this many wall seconds (an accelerated clock: 10 clock s up to 20x, 30 at
60x, 300 at 600x)."""
PERIOD_MIN_VALUES = 30
"""...and on an accelerated clock, at least this many values (a machine that changes a few
values per wall second at 60x: each OPC UA value waits up to a publishing interval, 100 wall
ms, 6 simulated s, longer than the 3 s tolerance; the least delayed of a few is not enough)."""
JUMP_MS = 5_000
"""Estimates further apart than this (gateway milliseconds) are a jump..."""
JUMP_WALL_S = 0.1
"""...and further apart than this many wall seconds of delay at the gateway clock's speed."""
TOLERANCE_MS = 2_000
"""Offsets up to this (gateway milliseconds) are left uncorrected."""
TOLERANCE_WALL_S = 0.05
"""...and up to this many wall seconds of delay at the gateway clock's speed (an accelerated
simulation, where a wall millisecond of delivery delay is ``speed`` clock milliseconds)."""
BEHIND_WALL_S = 0.25
"""A clock behind is corrected only beyond this many wall seconds of delay at the gateway
clock's speed (150 simulated s at 600x, 15 at 60x; :data:`TOLERANCE_MS` up to 8x): a whole
period's least delayed value may be that late on a loaded machine (0.1 wall s was seen)."""
OFFSET_METRIC = "Clock/Offset"
"""The correction taken off a device's timestamps, in milliseconds (Int64)."""


def tolerance_for(speed: float) -> int:
    """The largest offset left uncorrected on a gateway clock running at ``speed``."""
    return max(TOLERANCE_MS, round(TOLERANCE_WALL_S * 1000 * speed))


def behind_tolerance_for(speed: float) -> int:
    """The largest offset behind (negated) left uncorrected on a gateway clock at ``speed``."""
    return max(TOLERANCE_MS, round(BEHIND_WALL_S * 1000 * speed))


def jump_for(speed: float) -> int:
    """The smallest change of offset taken for a jump on a gateway clock running at ``speed``."""
    return max(JUMP_MS, round(JUMP_WALL_S * 1000 * speed))


def period_wall_s(speed: float) -> float:
    """Wall seconds of one period on a gateway clock running at ``speed``."""
    return max(PERIOD_MIN_WALL_S, PERIOD_S / speed)


@dataclass
class SourceClock:
    """The offset of one device's clock (see the module docstring)."""

    device_id: str
    offset_ms: int | None = None
    """The estimate of the last complete period (None until one has passed)."""
    jumps: int = 0
    correction_ms: int = 0
    """What is subtracted from the device's timestamps: the offset when beyond tolerance."""
    fresh: bool = False
    """Whether the last observation made a new estimate."""
    published_ms: int = 0
    """The correction last published."""
    speed: float = 1.0
    """The gateway clock's speed (clock seconds per wall second); tolerance and jumps follow it."""
    tolerance_ms: int = field(init=False)
    """Offsets up to this are not corrected (:func:`tolerance_for` the speed)."""
    behind_tolerance_ms: int = field(init=False)
    """Offsets behind down to minus this are not corrected (:func:`behind_tolerance_for`)."""
    jump_ms: int = field(init=False)
    """Changes of offset beyond this are jumps (:func:`jump_for` the speed)."""
    _period_max: int | None = None
    _period_end: float = field(init=False)
    _period_values = 0

    def __post_init__(self) -> None:
        self.tolerance_ms = tolerance_for(self.speed)
        self.behind_tolerance_ms = behind_tolerance_for(self.speed)
        self.jump_ms = jump_for(self.speed)
        self._period_end = time.monotonic() + period_wall_s(self.speed)

    def observe(self, device_ts: int, arrival: int) -> bool:
        """A value stamped ``device_ts`` by the device arrived at gateway time ``arrival``;
        True when this made a new estimate of the offset."""
        difference = device_ts - arrival
        if self._period_max is None or difference > self._period_max:
            self._period_max = difference
        self._period_values += 1
        enough = self.speed <= 1 or self._period_values >= PERIOD_MIN_VALUES
        if enough and time.monotonic() >= self._period_end:
            self.fresh = self._close(whole=True)
        else:
            self.fresh = self.offset_ms is None and self._close(whole=False)
        return self.fresh

    def to_publish(self) -> int | None:
        """The correction to publish now: at a new estimate while there is one, and 0 once
        when there is none any more (None: nothing to publish)."""
        if not self.fresh or not (self.correction_ms or self.published_ms):
            return None
        self.published_ms = self.correction_ms
        return self.correction_ms

    def corrected(self, device_ts: int, now: int) -> int:
        """``device_ts`` on the gateway's time line (never later than ``now``)."""
        if not self.correction_ms:
            return device_ts
        return min(device_ts - self.correction_ms, now)

    def _close(self, whole: bool) -> bool:
        estimate = self._period_max
        if estimate is None:
            return False
        previous = self.offset_ms
        if previous is not None and abs(estimate - previous) > self.jump_ms:
            self.jumps += 1
            log.warning(
                "%s: the device's clock jumped by %+.1f s (offset %+.1f s -> %+.1f s)",
                self.device_id,
                (estimate - previous) / 1000,
                previous / 1000,
                estimate / 1000,
            )
        self.offset_ms = estimate
        beyond = estimate > self.tolerance_ms or (whole and estimate < -self.behind_tolerance_ms)
        if not beyond:
            self.correction_ms = 0
        elif self.correction_ms and abs(estimate - self.correction_ms) <= self.tolerance_ms:
            # a change delivery can explain: the least delayed of the two (a short period's
            # estimate at 600x may carry tens of simulated seconds of one late delivery)
            self.correction_ms = max(estimate, self.correction_ms)
        else:
            self.correction_ms = estimate
        self._period_max = None
        self._period_values = 0
        self._period_end = time.monotonic() + period_wall_s(self.speed)
        return True
