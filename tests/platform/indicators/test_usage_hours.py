"""The interval sweeps that choose roll-up hours, against their definitions checked point by
point (minutes of one day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from plantwire_platform.indicators.formulas import HOUR
from plantwire_platform.indicators.shift_calendar import Interval, merge
from plantwire_platform.indicators.usage import covered_hours, subtract

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def at(minute: int) -> datetime:
    return DAY0 + minute * MINUTE


intervals = st.lists(
    st.tuples(st.integers(0, 1440), st.integers(1, 600)).map(lambda p: (at(p[0]), at(p[0] + p[1]))),
    max_size=12,
).map(merge)


def minutes(xs: list[Interval]) -> set[int]:
    return {m for a, b in xs for m in range(int((a - DAY0) / MINUTE), int((b - DAY0) / MINUTE))}


@given(intervals, intervals)
def test_subtract_is_set_difference(xs: list[Interval], ys: list[Interval]) -> None:
    got = subtract(xs, ys)
    assert minutes(got) == minutes(xs) - minutes(ys)
    assert got == sorted(got) and all(a < b for a, b in got)


@given(intervals)
def test_covered_hours_lie_inside_one_interval(plan: list[Interval]) -> None:
    hours = [DAY0 + i * HOUR for i in range(36)]
    expected = [h for h in hours if any(a <= h and h + HOUR <= b for a, b in plan)]
    assert covered_hours(plan, hours) == expected


def test_hand_picked() -> None:
    shift = [(at(6 * 60), at(14 * 60 + 30)), (at(22 * 60), at(30 * 60))]
    hours = [DAY0 + i * HOUR for i in range(30)]
    assert covered_hours(shift, hours) == [DAY0 + i * HOUR for i in (*range(6, 14), *range(22, 30))]
    assert subtract(shift, [(at(7 * 60), at(8 * 60)), (at(13 * 60), at(23 * 60))]) == [
        (at(6 * 60), at(7 * 60)),
        (at(8 * 60), at(13 * 60)),
        (at(23 * 60), at(30 * 60)),
    ]
