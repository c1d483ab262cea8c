"""The rule that places an NDEATH on its node's time line (pure logic; the real thing with a
broker, a database and an edge node: test_node_death_time.py)."""

from __future__ import annotations

from plantwire_platform.ingest.node_clock import (
    MAX_PROJECTION_MS,
    NO_SKEW_MS,
    death_time,
    declared_rate,
)

ARRIVAL = 1_800_000_000_000
HOUR = 3_600_000


def test_without_a_declared_rate_a_death_is_stamped_at_arrival() -> None:
    assert death_time(ARRIVAL, None, (ARRIVAL - HOUR, ARRIVAL - 5_000), 0) == ARRIVAL
    assert death_time(ARRIVAL, 1.0, None, 0) == ARRIVAL  # nothing seen of the node


def test_at_rate_one_an_honest_clock_gives_the_arrival() -> None:
    # the last message stamped 30 ms before it arrived, 5 s before the death: the projection
    # is 30 ms early, the delivery delay, not a clock off
    assert death_time(ARRIVAL, 1.0, (ARRIVAL - 5_030, ARRIVAL - 5_000), 0) == ARRIVAL
    off = NO_SKEW_MS + 1
    assert death_time(ARRIVAL, 1.0, (ARRIVAL - 5_000 - off, ARRIVAL - 5_000), 0) == ARRIVAL - off


def test_a_clock_behind_or_faster_is_projected_from_the_last_message() -> None:
    # an hour behind: its last message 5 s before the death's arrival
    assert death_time(ARRIVAL, 1.0, (ARRIVAL - HOUR - 5_000, ARRIVAL - 5_000), 0) == ARRIVAL - HOUR
    # 60x: 5 wall s after its message at node time T, the node's clock reads T + 300 s
    t = ARRIVAL + 7 * HOUR
    assert death_time(ARRIVAL, 60.0, (t, ARRIVAL - 5_000), 0) == t + 300_000
    # a message taken after the death's arrival time (a busy worker): no time backwards
    assert death_time(ARRIVAL, 60.0, (t, ARRIVAL + 10), 0) == t


def test_never_before_the_sessions_last_value() -> None:
    last_value = ARRIVAL + 20_000  # a third-party clock ahead: its values after the arrival
    assert death_time(ARRIVAL, None, None, last_value) == last_value
    assert death_time(ARRIVAL, 1.0, (ARRIVAL - HOUR, ARRIVAL), ARRIVAL - 10) == ARRIVAL - 10


def test_a_declared_rate_is_a_finite_number_above_zero() -> None:
    assert declared_rate(600.0) == 600.0 and declared_rate(1) == 1.0
    for bad in (0.0, -1.0, float("inf"), float("nan"), True, "60", None):
        assert declared_rate(bad) is None


def test_a_projection_no_real_node_makes_keeps_the_arrival_time() -> None:
    """A third party's absurd rate (or a silence of years at a high one) would put the death
    past any believable time, or overflow: the arrival time is kept instead."""
    last = (ARRIVAL - 5_000, ARRIVAL - 5_000)
    assert death_time(ARRIVAL, 1e300, last, 0) == ARRIVAL
    assert death_time(ARRIVAL, 1e12, last, 0) == ARRIVAL
    day_ahead = 2 + MAX_PROJECTION_MS / 5_000  # 5 s of silence: a day and 5 s ahead
    assert death_time(ARRIVAL, day_ahead, last, 0) == ARRIVAL
    assert death_time(ARRIVAL, 60.0, last, 0) == ARRIVAL - 5_000 + 300_000  # still projected
