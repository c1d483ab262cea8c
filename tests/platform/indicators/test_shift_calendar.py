"""Shift calendars and buckets in local time (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

import pytest

from plantwire_platform.indicators.shift_calendar import (
    ShiftCalendar,
    buckets,
    intersect,
    merge,
    parse_shifts,
    seconds,
)


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_all_day_is_the_whole_window() -> None:
    cal = ShiftCalendar("Asia/Shanghai")
    assert cal.planned(utc(2026, 11, 2, 3), utc(2026, 11, 3, 5)) == [
        (utc(2026, 11, 2, 3), utc(2026, 11, 3, 5))
    ]


def test_two_shifts_in_shanghai() -> None:
    # 06:00-22:00 local = 22:00 (previous day) .. 14:00 UTC; Monday 2026-11-02
    cal = ShiftCalendar("Asia/Shanghai", parse_shifts("06:00-14:00,14:00-22:00"))
    planned = cal.planned(utc(2026, 11, 2, 0), utc(2026, 11, 3, 0))
    assert planned == [
        (utc(2026, 11, 2, 0), utc(2026, 11, 2, 14)),
        (utc(2026, 11, 2, 22), utc(2026, 11, 3, 0)),
    ]
    assert seconds(planned) == 16 * 3600


def test_night_shift_crosses_midnight_and_weekends_are_off() -> None:
    cal = ShiftCalendar("UTC", ((time(22), time(6)),), frozenset(range(5)))  # Mon-Fri nights
    # Friday 2026-11-06 22:00 -> Saturday 06:00 is planned; Saturday night is not
    planned = cal.planned(utc(2026, 11, 6, 12), utc(2026, 11, 8, 12))
    assert planned == [(utc(2026, 11, 6, 22), utc(2026, 11, 7, 6))]


def test_daylight_saving_day_has_23_hours() -> None:
    cal = ShiftCalendar("Europe/Berlin")
    day = buckets(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22), "day", "Europe/Berlin")
    assert [seconds([b]) for b in day] == [23 * 3600]
    assert cal.planned(*day[0]) == day


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        (
            "day",
            [
                (utc(2026, 1, 30, 16), utc(2026, 1, 31, 16)),
                (utc(2026, 1, 31, 16), utc(2026, 2, 1, 16)),
                (utc(2026, 2, 1, 16), utc(2026, 2, 2, 16)),
            ],
        ),
        # 2026-02-02 is a Monday: the week before starts Monday 2026-01-26 local
        (
            "week",
            [
                (utc(2026, 1, 30, 16), utc(2026, 2, 1, 16)),
                (utc(2026, 2, 1, 16), utc(2026, 2, 2, 16)),
            ],
        ),
        (
            "month",
            [
                (utc(2026, 1, 30, 16), utc(2026, 1, 31, 16)),
                (utc(2026, 1, 31, 16), utc(2026, 2, 2, 16)),
            ],
        ),
    ],
)
def test_buckets_follow_local_calendar(
    bucket: str, expected: list[tuple[datetime, datetime]]
) -> None:
    got = buckets(utc(2026, 1, 30, 16), utc(2026, 2, 2, 16), bucket, "Asia/Shanghai")  # type: ignore[arg-type]
    assert got == expected


def test_interval_algebra() -> None:
    a = merge([(utc(2026, 1, 1, 5), utc(2026, 1, 1, 8)), (utc(2026, 1, 1, 1), utc(2026, 1, 1, 5))])
    assert a == [(utc(2026, 1, 1, 1), utc(2026, 1, 1, 8))]
    b = [(utc(2026, 1, 1, 0), utc(2026, 1, 1, 2)), (utc(2026, 1, 1, 7), utc(2026, 1, 1, 9))]
    assert intersect(a, b) == [
        (utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)),
        (utc(2026, 1, 1, 7), utc(2026, 1, 1, 8)),
    ]


def test_bad_shift_is_named() -> None:
    with pytest.raises(ValueError, match="bad shift '6-14'"):
        parse_shifts("6-14")


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/Los_Angeles"])
def test_the_ends_of_the_calendar_do_not_overflow(zone: str) -> None:
    """Windows at years 1 and 9999 (in zones where the local date runs past them) are cut, not
    overflowed."""
    calendar = ShiftCalendar(zone, parse_shifts("22:00-06:00"), frozenset(range(5)))
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    for start, end in ((first, first + timedelta(days=9)), (last - timedelta(days=9), last)):
        planned = calendar.planned(start, end)
        assert planned and all(start <= a < b <= end for a, b in planned)
        for bucket in ("day", "week", "month"):
            cuts = buckets(start, end, bucket, zone)
            assert cuts[0][0] == start and cuts[-1][1] == end
            assert all(a < b == c for (a, b), (c, _) in itertools.pairwise(cuts))
