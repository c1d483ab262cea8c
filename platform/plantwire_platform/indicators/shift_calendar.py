"""Planned production time and reporting buckets, in a site's time zone.

A site's shift calendar says when production is planned: indicators measure coverage and
availability against planned time, so a plant that runs two shifts is not "unobserved" at
night. Buckets (day, week, month) follow the site's local calendar.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from plantwire_platform.translation import Said, Text

Bucket = Literal["day", "week", "month"]
Interval = tuple[datetime, datetime]

ALL_DAY = ((time(0), time(0)),)


@dataclass(frozen=True, slots=True)
class ShiftCalendar:
    """Shifts as local (start, end) times on working weekdays (Monday = 0).

    A shift whose end is not after its start runs past midnight; (00:00, 00:00) is all day.
    """

    timezone: str = "UTC"
    shifts: tuple[tuple[time, time], ...] = ALL_DAY
    weekdays: frozenset[int] = frozenset(range(7))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def planned(self, start: datetime, end: datetime) -> list[Interval]:
        """Planned intervals inside [start, end), in UTC, merged and sorted."""
        if self.shifts == ALL_DAY and len(self.weekdays) == 7:
            return [(start, end)] if start < end else []
        zone = self.zone
        first = _day_before(_local_date(start, zone))
        last = _local_date(end, zone)
        out: list[Interval] = []
        day: date | None = first
        while day is not None and day <= last:
            if day.weekday() in self.weekdays:
                for shift_start, shift_end in self.shifts:
                    a = _local(day, shift_start, zone)
                    end_day = day if shift_end > shift_start else _day_after(day)
                    b = _local(end_day, shift_end, zone) if end_day else end
                    a, b = max(a, start), min(b, end)
                    if a < b:
                        out.append((a, b))
            day = _day_after(day)
        return merge(out)


# Days and times at the ends of the calendar (years 1 and 9999) are clamped instead of
# overflowing: a window there is valid, it simply holds no data.
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    try:
        return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return _EARLIEST if day.year == 1 else _LATEST


def _local_date(ts: datetime, zone: ZoneInfo) -> date:
    try:
        return ts.astimezone(zone).date()
    except OverflowError:
        return ts.date()


def _day_before(day: date) -> date:
    return day - timedelta(days=1) if day > date.min else day


def _day_after(day: date) -> date | None:
    return day + timedelta(days=1) if day < date.max else None


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Union of intervals, sorted; touching intervals are joined."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def intersect(xs: list[Interval], ys: list[Interval]) -> list[Interval]:
    """Intersection of two sorted, merged interval lists."""
    out: list[Interval] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a = max(xs[i][0], ys[j][0])
        b = min(xs[i][1], ys[j][1])
        if a < b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def seconds(intervals: Iterable[Interval]) -> float:
    return sum((b - a).total_seconds() for a, b in intervals)


def buckets(start: datetime, end: datetime, bucket: Bucket, timezone: str) -> list[Interval]:
    """[start, end) cut at local midnights, Mondays or first days of the month."""
    zone = ZoneInfo(timezone)
    local = _local_date(start, zone)
    if bucket == "day":
        cursor = local
    elif bucket == "week":
        cursor = local - timedelta(days=local.weekday())  # 0001-01-01 is a Monday
    else:
        cursor = local.replace(day=1)
    out: list[Interval] = []
    while True:
        following = _next_bucket(cursor, bucket)
        a = max(_local(cursor, time(0), zone), start) if out else start
        b = min(_local(following, time(0), zone), end) if following else end
        if a < b:
            out.append((a, b))
        if b >= end or following is None:
            return out
        cursor = following


def _next_bucket(cursor: date, bucket: Bucket) -> date | None:
    """The first day of the bucket after the one starting on ``cursor`` (None past year
    9999)."""
    try:
        if bucket == "day":
            return cursor + timedelta(days=1)
        if bucket == "week":
            return cursor + timedelta(days=7)
        return (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
    except OverflowError:
        return None


def parse_shifts(spec: str) -> tuple[tuple[time, time], ...]:
    """``"06:00-14:00,14:00-22:00"`` -> shifts; ``""`` or ``"24h"`` -> all day."""
    if spec.strip() in ("", "24h"):
        return ALL_DAY
    shifts = []
    for part in spec.split(","):
        try:
            a, b = part.strip().split("-")
            shifts.append((time.fromisoformat(a.strip()), time.fromisoformat(b.strip())))
        except ValueError as exc:
            raise Said(Text("registry.shift", shift=part.strip())) from exc
    return tuple(shifts)
