"""The offset of a device's clock, estimated from its timestamps against arrival."""

from __future__ import annotations

import pytest

from plantwire_edge.source_clock import PERIOD_S, SourceClock, tolerance_for


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


def test_corrections_ahead_at_once_behind_after_a_whole_period_and_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [1000.0]
    monkeypatch.setattr("plantwire_edge.source_clock.time.monotonic", lambda: wall[0])
    ahead = SourceClock("A", tolerance_ms=2_000)
    assert ahead.observe(190_000, 100_000) and ahead.correction_ms == 90_000
    assert ahead.to_publish() == 90_000
    assert ahead.corrected(290_100, 200_000) == 200_000  # never later than its arrival
    assert ahead.corrected(289_500, 200_000) == 199_500
    wall[0] += PERIOD_S
    assert ahead.observe(301_000, 300_000)  # set right: within tolerance, a last 0 published
    assert (ahead.correction_ms, ahead.to_publish()) == (0, 0)
    wall[0] += PERIOD_S
    assert ahead.observe(400_500, 400_000) and ahead.to_publish() is None  # nothing to say
    assert ahead.corrected(123, 400_000) == 123

    behind = SourceClock("B", tolerance_ms=2_000)
    behind.observe(40_000, 100_000)  # its first value may be an old one: not corrected yet
    assert (behind.offset_ms, behind.correction_ms, behind.to_publish()) == (-60_000, 0, None)
    behind.observe(140_000, 200_000)
    wall[0] += PERIOD_S
    behind.observe(240_000, 300_000)  # a whole period 60 s behind: corrected
    assert behind.correction_ms == -60_000 and behind.to_publish() == -60_000
    assert behind.corrected(250_000, 320_000) == 310_000

    honest = SourceClock("C", tolerance_ms=2_000)
    honest.observe(99_000, 100_000)  # a second's delivery delay is not corrected
    wall[0] += PERIOD_S
    honest.observe(198_500, 200_000)
    assert (honest.offset_ms, honest.correction_ms, honest.to_publish()) == (-1_500, 0, None)


def test_tolerance_scales_with_an_accelerated_clock() -> None:
    assert tolerance_for(1.0) == 2_000
    assert tolerance_for(150.0) == 7_500  # 50 wall ms of delivery delay at 150x
