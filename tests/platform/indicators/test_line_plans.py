"""Planned time per line: a line's own shifts and workdays, else its site's, minus its planned
maintenance windows (pure, hand-computed)."""

from __future__ import annotations

from datetime import UTC, datetime

from plantwire_platform.indicators.enterprise import planned_by_line
from plantwire_platform.indicators.shift_calendar import ShiftCalendar, parse_shifts, seconds


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def test_lines_plan_on_their_own_calendars_minus_maintenance() -> None:
    """Site 1 in Shanghai plans 08:00-16:00 (00:00-08:00 UTC) on weekdays. Window: Monday
    2026-03-02 00:00 UTC .. Tuesday 00:00 UTC.

    - L1 as its site: 8 h;
    - L2 its own 08:00-12:00 local (00:00-04:00 UTC), maintenance 01:00-01:30 UTC: 3.5 h;
    - L3 its site's shifts but on weekends only: nothing on a Monday;
    - L4 its site's calendar, a maintenance window 07:00-09:00 UTC across its shift's end
      and one outside the window: 7 h;
    - equipment on no line: the site's 8 h."""
    site = ShiftCalendar("Asia/Shanghai", parse_shifts("08:00-16:00"), frozenset(range(5)))
    lines = [
        (1, "L1", None, None, [], []),
        (1, "L2", "08:00-12:00", None, [utc(2, 1)], [utc(2, 1, 30)]),
        (1, "L3", None, [5, 6], [], []),
        (1, "L4", None, None, [utc(2, 7), utc(5, 0)], [utc(2, 9), utc(5, 1)]),
    ]
    plans = planned_by_line({1: site}, lines, utc(2, 0), utc(3, 0))
    hours = {key: seconds(plan) / 3600 for key, plan in plans.items()}
    assert hours == {(1, ""): 8, (1, "L1"): 8, (1, "L2"): 3.5, (1, "L3"): 0, (1, "L4"): 7}
    assert plans[(1, "L2")] == [(utc(2, 0), utc(2, 1)), (utc(2, 1, 30), utc(2, 4))]
