"""How fast a gateway's clock runs, as its NBIRTH declares it (Clock/Rate)."""

from __future__ import annotations

import time

from plantwire_bus.timeline import TimeLine
from plantwire_edge.clock import WALL_CLOCK, clock_rate


class LineClock:
    def __init__(self, line: TimeLine) -> None:
        self.line = line

    @property
    def speed(self) -> float:
        return self.line.speed

    def now_ms(self) -> int:
        return self.line.at(time.time())


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
