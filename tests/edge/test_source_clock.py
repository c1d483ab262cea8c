"""The offset of a device's clock, estimated from its timestamps against arrival."""

from __future__ import annotations

import pytest

from plantwire_edge.source_clock import PERIOD_S, SourceClock


def test_offset_is_the_least_delayed_value_of_a_period_and_a_jump_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [1000.0]
    monkeypatch.setattr("plantwire_edge.source_clock.time.monotonic", lambda: wall[0])
    clock = SourceClock("M1")
    clock.observe(190_000, 100_000)  # the first value gives a first estimate: 90 s ahead
    assert clock.offset_ms == 90_000
    for delay in (300, 50, 1200):  # delivered 50-1200 ms after they were stamped
        clock.observe(200_000 + 90_000 - delay, 200_000)
    assert clock.offset_ms == 90_000  # the period is not over yet
    wall[0] += PERIOD_S
    clock.observe(300_000 + 90_000 - 400, 300_000)
    assert (clock.offset_ms, clock.jumps) == (90_000 - 50, 0)  # the least delayed of them
    wall[0] += PERIOD_S
    clock.observe(400_000 - 2_000, 400_000)  # set right by hand: 2 s behind now
    assert (clock.offset_ms, clock.jumps) == (-2_000, 1)
    wall[0] += PERIOD_S
    clock.observe(500_000 - 1_000, 500_000)  # drifting by a second: no jump
    assert (clock.offset_ms, clock.jumps) == (-1_000, 1)
