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
        zone = self.zone
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        out: list[Interval] = []
        day = first
        while day <= last:
            if day.weekday() in self.weekdays:
                for shift_start, shift_end in self.shifts:
                    a = _local(day, shift_start, zone)
                    end_day = day if shift_end > shift_start else day + timedelta(days=1)
                    b = _local(end_day, shift_end, zone)
                    a, b = max(a, start), min(b, end)
                    if a < b:
                        out.append((a, b))
            day += timedelta(days=1)
        return merge(out)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


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
    local = start.astimezone(zone)
    if bucket == "day":
        cursor = local.date()
    elif bucket == "week":
        cursor = local.date() - timedelta(days=local.weekday())
    else:
        cursor = local.date().replace(day=1)
    out: list[Interval] = []
    while True:
        if bucket == "day":
            following = cursor + timedelta(days=1)
        elif bucket == "week":
            following = cursor + timedelta(days=7)
        else:
            following = (cursor.replace(day=28) + timedelta(days=4)).replace(day=1)
        a = max(_local(cursor, time(0), zone), start)
        b = min(_local(following, time(0), zone), end)
        if a < b:
            out.append((a, b))
        if b >= end:
            return out
        cursor = following


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
            raise ValueError(f"bad shift {part.strip()!r}: expected HH:MM-HH:MM") from exc
    return tuple(shifts)
