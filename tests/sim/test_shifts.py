"""Shift calendars: work, setup, breaks and off time in the site's time zone."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from plantwire_sim.shifts import ShiftCalendar, parse_spans

TZ = "Asia/Shanghai"


def ms(local: str, tz: str = TZ) -> int:
    return round(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


TWO_SHIFTS = ShiftCalendar(
    TZ,
    parse_spans("08:00-20:00,20:00-08:00"),
    frozenset(range(7)),
    parse_spans("12:00-12:45,00:00-00:45"),
    15,
)
DAY_SHIFT = ShiftCalendar(
    TZ, parse_spans("08:00-17:00"), frozenset(range(5)), parse_spans("12:00-13:00"), 0
)

# 2025-03-03 is a Monday
CASES = [
    (TWO_SHIFTS, "2025-03-03T10:00", "work", "2025-03-03T12:00"),
    (TWO_SHIFTS, "2025-03-03T08:05", "setup", "2025-03-03T08:15"),
    (TWO_SHIFTS, "2025-03-03T12:10", "break", "2025-03-03T12:45"),
    (TWO_SHIFTS, "2025-03-03T12:45", "work", "2025-03-03T20:00"),
    (TWO_SHIFTS, "2025-03-03T20:00", "setup", "2025-03-03T20:15"),
    (TWO_SHIFTS, "2025-03-03T23:00", "work", "2025-03-04T00:00"),
    (TWO_SHIFTS, "2025-03-04T00:30", "break", "2025-03-04T00:45"),
    (TWO_SHIFTS, "2025-03-04T01:00", "work", "2025-03-04T08:00"),
    (DAY_SHIFT, "2025-03-03T07:59", "off", "2025-03-03T08:00"),
    (DAY_SHIFT, "2025-03-03T08:00", "work", "2025-03-03T12:00"),
    (DAY_SHIFT, "2025-03-03T12:30", "break", "2025-03-03T13:00"),
    (DAY_SHIFT, "2025-03-03T16:59", "work", "2025-03-03T17:00"),
    (DAY_SHIFT, "2025-03-07T17:30", "off", "2025-03-10T08:00"),  # Friday evening -> Monday
    (DAY_SHIFT, "2025-03-08T10:00", "off", "2025-03-10T08:00"),  # Saturday
]


@pytest.mark.parametrize(("calendar", "at", "situation", "until"), CASES)
def test_situation(calendar: ShiftCalendar, at: str, situation: str, until: str) -> None:
    assert calendar.situation(ms(at)) == (situation, ms(until))


def test_all_day_calendar_with_setup_sets_up_at_midnight() -> None:
    calendar = ShiftCalendar("UTC", parse_spans("24h"), frozenset(range(7)), (), 10)
    assert not calendar.always_on
    assert calendar.situation(ms("2025-03-03T00:05", "UTC")) == (
        "setup",
        ms("2025-03-03T00:10", "UTC"),
    )
    assert calendar.situation(ms("2025-03-03T13:00", "UTC")) == (
        "work",
        ms("2025-03-04T00:00", "UTC"),
    )
    assert ShiftCalendar("UTC").always_on


@pytest.mark.parametrize(
    ("spec", "spans"),
    [
        ("24h", ((time(0), time(0)),)),
        ("", ((time(0), time(0)),)),
        ("06:00-14:00, 14:00-22:00", ((time(6), time(14)), (time(14), time(22)))),
        ("22:00-06:00", ((time(22), time(6)),)),
    ],
)
def test_parse_spans(spec: str, spans: tuple[tuple[time, time], ...]) -> None:
    assert parse_spans(spec) == spans


@pytest.mark.parametrize("spec", ["8-16", "08:00", "08:00-25:00", "a-b"])
def test_parse_spans_refuses(spec: str) -> None:
    with pytest.raises(ValueError, match="expected HH:MM-HH:MM"):
        parse_spans(spec)
