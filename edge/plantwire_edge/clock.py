"""The gateway's clock: where births, deaths, payload timestamps and gateway-stamped values
(Modbus reads, devices without a timestamp, device clocks found insane) get their time, and how
long the gateway's own waits are.

A real plant runs on :data:`WALL_CLOCK`. A gateway reading simulated machines whose time runs
faster than the wall clock (``plantwire demo --speed``, the golden tests) is given the
simulator's clock instead, so that its Sparkplug sessions and the machines' source
timestamps are on one time line. Any object with a ``now_ms()`` method is a clock (the
simulator's ``SimClock`` is one); one with a ``speed`` runs that many clock seconds per wall
second (1 without one).

Which waits follow the clock. What the gateway decides on its own and stamps on its clock runs
in clock time: :func:`wall_s` turns an interval in clock seconds into the wall seconds to wait
(divided by the speed, down to a floor of a few wall milliseconds), so that at 600x a wait of
0.1 s is 0.1 *simulated* s, and at 1x nothing changes. These are the reconnect retries and
their back-off (OPC UA, Modbus, MQTT devices, and the broker uplink's; a returning server or
broker is seen within the same simulated time at any speed), the silence checks of MQTT
devices, and the period over which a device clock's offset is measured
(:mod:`plantwire_edge.source_clock`). What is agreed with a device stays in wall time: OPC UA
keep-alives, publishing intervals, the session watchdog and request timeouts are protocol
timers that the server (a simulator's too) runs in wall time, and a slow or busy server is not
a dead one (issue 13): dividing its liveness by the speed would take a server that answers in
50 ms for dead at 600x. When to poll a device is the gateway's own decision too: a
``poll_interval_ms`` (Modbus devices, OPC UA tags in mode ``poll``) is in clock time, at the
clock's rate now, and at least :data:`POLL_FLOOR_S` wall apart (a read is a round trip to the
device), so one config samples a simulation at any speed as it samples a plant.
The node's birth says how fast its clock runs (:func:`clock_rate`, the metric
:data:`~plantwire_bus.extension.CLOCK_RATE`), so that the host can stamp a death the broker
publishes for it (its Will) on its time line too.
"""

from __future__ import annotations

import time
from typing import Protocol

from plantwire_bus.timeline import TimeLine
from plantwire_edge.values import now_ms

WALL_FLOOR_S = 0.002
"""The shortest wall wait :func:`wall_s` gives (an accelerated clock's retries stay cheap)."""
POLL_FLOOR_S = 0.01
"""The shortest wall time between two polls of a device: each is a round trip to it (at 600x a
poll interval of 1 simulated second would be 1.7 wall ms)."""


class Clock(Protocol):
    """Milliseconds since the epoch, as the gateway should stamp them."""

    def now_ms(self) -> int: ...


class WallClock:
    """The host's clock (UTC milliseconds since the epoch)."""

    def now_ms(self) -> int:
        return now_ms()


WALL_CLOCK: Clock = WallClock()


def speed_of(clock: Clock) -> float:
    """Clock seconds per wall second (1 but for a gateway on a simulation's clock)."""
    speed = float(getattr(clock, "speed", 1.0))
    return speed if speed > 0 else 1.0


def wall_s(clock: Clock, clock_s: float, floor_s: float = WALL_FLOOR_S) -> float:
    """Wall seconds to wait for ``clock_s`` seconds of ``clock`` to pass at its rate now
    (:func:`clock_rate`: a replay that has caught up runs at 1), at least ``floor_s`` (or
    ``clock_s`` itself, when shorter)."""
    return max(min(floor_s, clock_s), clock_s / clock_rate(clock))


def next_poll(clock: Clock, interval_ms: int, due: float | None, now: float) -> float:
    """The loop time of the poll after the one due at ``due`` (None: after one made ``now``):
    ``interval_ms`` of ``clock`` later at its rate now, at least :data:`POLL_FLOOR_S` wall; when
    that has passed already (a slow device), that long after ``now``: polls skipped, not piled
    up."""
    every = wall_s(clock, interval_ms / 1000, POLL_FLOOR_S)
    return due + every if due is not None and due + every >= now else now + every


def clock_rate(clock: Clock) -> float:
    """Milliseconds of ``clock`` per wall millisecond now, as the node's birth declares it:
    its speed (:func:`speed_of`), but 1 once a replay has caught up with the wall clock."""
    line = getattr(clock, "line", None)
    if isinstance(line, TimeLine) and line.live_at(time.time()):
        return 1.0
    return speed_of(clock)
