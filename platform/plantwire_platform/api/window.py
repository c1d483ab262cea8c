"""The window of an indicator request, checked before any work.

Limits are checked on the query alone, before a database connection is taken: a window
longer than ``api_max_window_days``, more buckets than ``api_max_buckets``, or times outside
1970..2200 are refused at once with 422. A time without an offset is read in the time zone of
the enterprise (for a group: of its first enterprise's first site).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Query, Request
from psycopg import AsyncConnection

from plantwire_platform.errors import ApiError
from plantwire_platform.indicators import enterprise as ind
from plantwire_platform.indicators import report
from plantwire_platform.indicators.formulas import AUTO_SHARE_MIN, COVERAGE_MIN, Thresholds
from plantwire_platform.indicators.shift_calendar import buckets
from plantwire_platform.translation import Text

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

_FROM = (
    "window start (ISO 8601; without an offset, in the enterprise's time zone); default: the "
    "last hour"
)
_TO = "window end (ISO 8601; without an offset, in the enterprise's time zone); default: now"


class WindowQuery:
    """The query parameters every indicator endpoint takes, checked against the limits."""

    def __init__(
        self,
        request: Request,
        start: Annotated[datetime | None, Query(alias="from", description=_FROM)] = None,
        end: Annotated[datetime | None, Query(alias="to", description=_TO)] = None,
        bucket: Annotated[
            Literal["day", "week", "month"] | None,
            Query(description="also cut the window into local days, weeks or months"),
        ] = None,
        coverage_min: Annotated[float, Query(ge=0, le=1)] = COVERAGE_MIN,
        auto_share_min: Annotated[float, Query(ge=0, le=1)] = AUTO_SHARE_MIN,
    ) -> None:
        settings = request.app.state.settings
        self.max_days: int = settings.api_max_window_days
        self.max_buckets: int = settings.api_max_buckets
        self.start, self.end, self.bucket = start, end, bucket
        self.thresholds = Thresholds(coverage_min, auto_share_min)
        # a zone-less time is local; any zone is within 14 h of UTC, so checking in UTC
        # with that margin refuses nothing the precise check would let through
        slack = timedelta(hours=14)
        for name, value in (("from", start), ("to", end)):
            if value is not None and not EARLIEST + slack <= _utc(value) <= LATEST - slack:
                raise ApiError(422, "invalid_request", Text("window.bounds", name=name))
        self._check(_utc(start) if start else None, _utc(end) if end else None, "UTC", slack)

    def resolve(self, zone: str, default_start: datetime | None = None) -> report.Window:
        """The window in ``zone`` (zone-less times are read there), checked precisely."""
        tz = ZoneInfo(zone)
        end = _aware(self.end, tz) if self.end else datetime.now(UTC)
        start = _aware(self.start, tz) if self.start else default_start or end - timedelta(hours=1)
        self._check(start, end, zone, timedelta(0))
        return report.Window(
            start=start, end=end, defaulted=self.start is None and self.end is None
        )

    def _check(
        self, start: datetime | None, end: datetime | None, zone: str, slack: timedelta
    ) -> None:
        if start is None:
            return
        end = end or datetime.now(UTC)
        if start >= end + slack:
            raise ApiError(422, "invalid_request", Text("window.order"))
        if end - start > timedelta(days=self.max_days) + slack:
            raise ApiError(422, "invalid_request", Text("window.too_long", days=self.max_days))
        if self.bucket is not None:
            count = len(buckets(start, end, self.bucket, zone))
            if count > self.max_buckets + (1 if slack else 0):
                raise ApiError(
                    422,
                    "invalid_request",
                    Text(f"window.buckets.{self.bucket}", count=count, most=self.max_buckets),
                )


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _aware(ts: datetime, tz: tzinfo) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=tz)


async def resolve_window(
    conn: AsyncConnection[Any], ids: list[int], q: WindowQuery, zone: str
) -> report.Window:
    """The request's window; without ``from`` and ``to``, the default one of the enterprises."""
    if q.start is None and q.end is None:
        start, _ = await ind.default_window(conn, ids, datetime.now(UTC))
        return q.resolve(zone, start)
    return q.resolve(zone)
