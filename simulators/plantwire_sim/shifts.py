"""Shift calendar of a simulated line: when machines work, set up, break, stand switched off
or in planned maintenance.

It reads the registry fields: ``shifts`` (``"06:00-14:00,14:00-22:00"``, ``"24h"``) and
``workdays`` (Monday = 0, the day a shift starts on) of the line, else of its site, the site's
``timezone`` and the line's ``maintenance`` windows, plus two simulation fields of the site:
``breaks`` (``"12:00-12:30"``, local times, only inside shifts) and ``setup_minutes`` at the
start of every shift. A shift whose end is not after its start runs past midnight;
``00:00-00:00`` lasts all day. Outside every shift machines are off; in a maintenance window
they stand still (it wins over shifts, breaks and setup).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Situation = Literal["work", "setup", "break", "off", "maintenance"]
Span = tuple[time, time]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEARCH_DAYS = 9
ALL_DAY: tuple[Span, ...] = ((time(0), time(0)),)


def parse_spans(spec: str) -> tuple[Span, ...]:
    """``"06:00-14:00,14:00-22:00"`` -> local (start, end) pairs; ``""``/``"24h"`` -> all day."""
    if spec.strip() in ("", "24h"):
        return ALL_DAY
    spans = []
    for part in spec.split(","):
        try:
            a, b = part.strip().split("-")
            spans.append((time.fromisoformat(a.strip()), time.fromisoformat(b.strip())))
        except ValueError:
            raise ValueError(f"bad time span {part.strip()!r}: expected HH:MM-HH:MM") from None
    return tuple(spans)


@dataclass(frozen=True, slots=True)
class ShiftCalendar:
    timezone: str = "UTC"
    shifts: tuple[Span, ...] = ALL_DAY
    workdays: frozenset[int] = frozenset(range(7))
    breaks: tuple[Span, ...] = ()
    setup_minutes: float = 0.0
    maintenance: tuple[tuple[int, int], ...] = ()
    """Planned maintenance windows, [start, end) epoch ms, sorted."""

    @property
    def always_on(self) -> bool:
        """True when machines are never off, never set up, never on a break, never in
        maintenance."""
        return (
            self.shifts == ALL_DAY
            and self.workdays == frozenset(range(7))
            and not self.breaks
            and not self.setup_minutes
            and not self.maintenance
        )

    def situation(self, ts_ms: int) -> tuple[Situation, int]:
        """What the line does at ``ts_ms`` and until when (exclusive, epoch ms)."""
        for start, end in self.maintenance:
            if start <= ts_ms < end:
                return "maintenance", end
        situation, until = self._shifts_situation(ts_ms)
        later = [start for start, _ in self.maintenance if start > ts_ms]
        return situation, min([until, *later])

    def _shifts_situation(self, ts_ms: int) -> tuple[Situation, int]:
        tz = ZoneInfo(self.timezone)
        today = datetime.fromtimestamp(ts_ms / 1000, tz).date()
        for start, end in self._spans(self.shifts, today - timedelta(days=1), 2, tz, True):
            if start <= ts_ms < end:
                return self._inside(ts_ms, start, end, tz)
        later = [s for s, _ in self._spans(self.shifts, today, _SEARCH_DAYS, tz, True) if s > ts_ms]
        return "off", min(later) if later else ts_ms + _SEARCH_DAYS * 86_400_000

    def _inside(self, ts_ms: int, start: int, end: int, tz: ZoneInfo) -> tuple[Situation, int]:
        setup_end = min(end, start + round(self.setup_minutes * 60_000))
        if ts_ms < setup_end:
            return "setup", setup_end
        day = datetime.fromtimestamp(start / 1000, tz).date()
        until = end
        for b_start, b_end in sorted(self._spans(self.breaks, day, 3, tz, False)):
            b_start, b_end = max(b_start, setup_end), min(b_end, end)
            if b_start >= b_end:
                continue
            if b_start <= ts_ms < b_end:
                return "break", b_end
            if b_start > ts_ms:
                until = min(until, b_start)
        return "work", until

    def _spans(
        self, spans: tuple[Span, ...], first: date, days: int, tz: ZoneInfo, workdays: bool
    ) -> list[tuple[int, int]]:
        out = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            if workdays and day.weekday() not in self.workdays:
                continue
            for a, b in spans:
                end_day = day if b > a else day + timedelta(days=1)
                out.append((_local_ms(day, a, tz), _local_ms(end_day, b, tz)))
        return out


def _local_ms(day: date, at: time, tz: ZoneInfo) -> int:
    return (datetime.combine(day, at, tzinfo=tz) - _EPOCH) // timedelta(milliseconds=1)
