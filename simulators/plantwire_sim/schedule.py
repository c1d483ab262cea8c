"""When a scheduled event of a scenario happens: a fault or an outage, once or repeatedly;
when a one-off event (a registry change, :class:`Start`) happens.

A schedule gives its start one of two ways:

- ``at_s``: simulated seconds after the run's start, repeated every ``every_s`` if given;
- ``at``: a local calendar time in the site's time zone, either ``"HH:MM"`` (or
  ``"HH:MM:SS"``), every day (only on ``days``, Monday = 0, when given), or a local date and
  time ``"YYYY-MM-DDTHH:MM"`` once (an explicit offset, ``"...+08:00"``, wins over the
  site's zone; ``every_s`` repeats it).

Each occurrence lasts ``seconds``. An occurrence already under way at the run's start (a
night shutdown from 22:00 when the run starts at 23:00) is active from the start. A one-off
event happens at the first start at or after the run's start (a date and time before it: at
the start).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEARCH_DAYS = 15


class Start(BaseModel):
    """When something happens: ``at_s`` or ``at`` (with ``days``), spelt and checked as for
    a :class:`Schedule`; a one-off event (a registry change) is a start without a length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: float | None = Field(
        default=None, ge=0, description="start, simulated seconds after the run's start"
    )
    at: str | None = Field(
        default=None,
        description="start at a local time: 'HH:MM' daily, or 'YYYY-MM-DDTHH:MM' once",
    )
    days: tuple[int, ...] | None = Field(
        default=None, description="with a daily 'at': only on these days (Monday = 0)"
    )

    @model_validator(mode="after")
    def _check_start(self) -> Start:
        if (self.at_s is None) == (self.at is None):
            raise ValueError("give its start as either at_s (seconds after the start) or at")
        if self.at is not None:
            daily = _daily(self.at)
            if daily is None:
                _once(self.at, "UTC")  # raises on a bad date and time
            if daily is None and self.days is not None:
                raise ValueError(f"days are for a daily time (at = 'HH:MM'), not {self.at!r}")
        elif self.days is not None:
            raise ValueError("days are for a daily time (at = 'HH:MM'), not at_s")
        if self.days is not None and (not self.days or any(not 0 <= d <= 6 for d in self.days)):
            raise ValueError("days are 0 (Monday) .. 6 (Sunday)")
        return self

    def first_start(self, t0_ms: int, timezone: str = "UTC") -> int | None:
        """Epoch ms of the first start at or after the run's start ``t0_ms`` (``timezone`` is
        the site's): ``at_s`` after it, the first matching local time of day, or a local date
        and time (one before the run's start: the start itself, as in force already). None
        when no matching day comes within 15 days."""
        if self.at is None:
            return t0_ms + round((self.at_s or 0.0) * 1000)
        daily = _daily(self.at)
        if daily is None:
            return max(_once(self.at, timezone), t0_ms)
        zone = ZoneInfo(timezone)
        day = datetime.fromtimestamp(t0_ms / 1000, zone).date() - timedelta(days=1)
        horizon = day + timedelta(_SEARCH_DAYS)
        while day <= horizon:
            if self.days is None or day.weekday() in self.days:
                start = _local_ms(day, daily, zone)
                if start >= t0_ms:
                    return start
            day += timedelta(days=1)
        return None


class Schedule(Start):
    """The start(s) and length of a scheduled event (see the module's docstring)."""

    seconds: float = Field(gt=0, description="how long it lasts")
    every_s: float | None = Field(default=None, gt=0, description="repeat period")

    @model_validator(mode="after")
    def _check_schedule(self) -> Schedule:
        if self.at is not None and _daily(self.at) is not None and self.every_s is not None:
            raise ValueError(f"at {self.at!r} repeats daily: every_s is for at_s or a date")
        return self

    def next_occurrence(
        self, t0_ms: int, after_ms: int, timezone: str = "UTC"
    ) -> tuple[int, int] | None:
        """(start, end) epoch ms of the first occurrence that starts at or after ``after_ms``
        (the run began at ``t0_ms``; ``timezone`` is the site's). An occurrence under way at
        ``t0_ms`` counts as starting there when ``after_ms`` is ``t0_ms``."""
        length = max(1, round(self.seconds * 1000))
        if self.at is None:
            first = t0_ms + round((self.at_s or 0.0) * 1000)
            period = None if self.every_s is None else max(1, round(self.every_s * 1000))
            return _repeat(first, length, period, after_ms)
        daily = _daily(self.at)
        if daily is None:
            first = _once(self.at, timezone)
            period = None if self.every_s is None else max(1, round(self.every_s * 1000))
            found = _repeat(first, length, period, t0_ms - length + 1)
            if found is None:
                return None
            found = (max(found[0], t0_ms), found[1])  # under way at the start: from the start
            if found[0] >= after_ms:
                return found
            return _repeat(first, length, period, after_ms)
        zone = ZoneInfo(timezone)
        back = timedelta(days=length // 86_400_000 + 2)  # occurrences that may still be on
        day = datetime.fromtimestamp(min(t0_ms, after_ms) / 1000, zone).date() - back
        day = max(day, datetime.fromtimestamp(after_ms / 1000, zone).date() - back)
        horizon = datetime.fromtimestamp(after_ms / 1000, zone).date() + timedelta(_SEARCH_DAYS)
        while day <= horizon:
            if self.days is None or day.weekday() in self.days:
                start = _local_ms(day, daily, zone)
                if start + length > t0_ms:
                    start = max(start, t0_ms)
                    if start >= after_ms:
                        return start, _local_ms(day, daily, zone) + length
            day += timedelta(days=1)
        return None


def _repeat(first: int, length: int, period: int | None, after_ms: int) -> tuple[int, int] | None:
    if first >= after_ms:
        return first, first + length
    if period is None:
        return None
    start = first + -(-(after_ms - first) // period) * period
    return start, start + length


def _daily(at: str) -> time | None:
    """The time of day of a daily ``at``, or None when ``at`` is a date and time."""
    if "T" in at or " " in at.strip() or "-" in at:
        return None
    try:
        found = time.fromisoformat(at.strip())
    except ValueError:
        raise ValueError(
            f"at {at!r}: expected a local time of day 'HH:MM' (daily) "
            "or a local date and time 'YYYY-MM-DDTHH:MM'"
        ) from None
    if found.tzinfo is not None:
        raise ValueError(f"at {at!r}: a daily time is in the site's time zone, without offset")
    return found


def _once(at: str, timezone: str) -> int:
    try:
        found = datetime.fromisoformat(at.strip())
    except ValueError:
        raise ValueError(
            f"at {at!r}: expected a local date and time 'YYYY-MM-DDTHH:MM' "
            "or a local time of day 'HH:MM' (daily)"
        ) from None
    if found.tzinfo is None:
        found = found.replace(tzinfo=ZoneInfo(timezone))
    return (found - _EPOCH) // timedelta(milliseconds=1)


def _local_ms(day: date, at: time, zone: ZoneInfo) -> int:
    return (datetime.combine(day, at, tzinfo=zone) - _EPOCH) // timedelta(milliseconds=1)
