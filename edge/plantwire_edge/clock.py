"""The gateway's clock: where births, deaths, payload timestamps and gateway-stamped values
(Modbus reads, devices without a timestamp, device clocks found insane) get their time.

A real plant runs on :data:`WALL_CLOCK`. A gateway reading simulated machines whose time runs
faster than the wall clock (``plantwire demo --speed``, the golden tests) is given the
simulator's clock instead, so that its Sparkplug sessions and the machines' source
timestamps are on one time line. Any object with a ``now_ms()`` method is a clock (the
simulator's ``SimClock`` is one); intervals (polling, publishing, keep-alives, back-off) stay
in wall time whatever the clock.
"""

from __future__ import annotations

from typing import Protocol

from plantwire_edge.values import now_ms


class Clock(Protocol):
    """Milliseconds since the epoch, as the gateway should stamp them."""

    def now_ms(self) -> int: ...


class WallClock:
    """The host's clock (UTC milliseconds since the epoch)."""

    def now_ms(self) -> int:
        return now_ms()


WALL_CLOCK: Clock = WallClock()
