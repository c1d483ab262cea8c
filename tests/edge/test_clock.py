"""How fast a gateway's clock runs, as its NBIRTH declares it (Clock/Rate)."""

from __future__ import annotations

import time

from plantwire_bus.timeline import TimeLine
from plantwire_edge.clock import WALL_CLOCK, clock_rate, wall_s

from .conftest import LineClock


def test_the_wall_clock_runs_at_one_a_simulators_at_its_speed() -> None:
    now = time.time()
    assert clock_rate(WALL_CLOCK) == 1.0
    assert clock_rate(LineClock(TimeLine(round(now * 1000), 600.0, now))) == 600.0
    # a replay of the past at 60x, still an hour behind the wall clock: 60
    behind = TimeLine(round(now * 1000) - 3_600_000, 60.0, now, catch_up=True)
    assert clock_rate(LineClock(behind)) == 60.0
    # ...and once it has caught up with the wall clock, which it then follows: 1
    caught_up = TimeLine(round(now * 1000) - 60_000, 60.0, now - 10, catch_up=True)
    assert clock_rate(LineClock(caught_up)) == 1.0


def test_waits_in_clock_time_down_to_a_wall_floor() -> None:
    """A wait of the gateway's own (a retry, its back-off) lasts that long on its clock: the
    same at 1x, divided by the speed on a simulation's, at least 2 wall ms; a replay that
    caught up with the wall clock waits in wall time again."""
    now = time.time()
    at_600 = LineClock(TimeLine(round(now * 1000), 600.0, now))
    assert (wall_s(WALL_CLOCK, 0.1), wall_s(WALL_CLOCK, 0.001)) == (0.1, 0.001)
    assert wall_s(LineClock(TimeLine(round(now * 1000), 60.0, now)), 0.5) == 0.5 / 60
    assert (wall_s(at_600, 0.1), wall_s(at_600, 300.0)) == (0.002, 0.5)
    caught_up = TimeLine(round(now * 1000) - 60_000, 60.0, now - 10, catch_up=True)
    assert wall_s(LineClock(caught_up), 0.1) == 0.1
