"""Indicator computations as jobs: given how to open database connections, they compute report
bodies. Both HTTP interfaces run a light job on their request's connection and a heavier one in
a worker process (:mod:`plantwire_platform.workers`), so that no CPU-heavy computation runs on
an API's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from plantwire_platform.indicators import enterprise as ind
from plantwire_platform.indicators import report
from plantwire_platform.indicators.formulas import Thresholds
from plantwire_platform.indicators.report import Indicator, IndicatorReport
from plantwire_platform.indicators.shift_calendar import buckets

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]
"""How a job opens its connections."""

LIGHT_WINDOW = timedelta(days=7)
"""A computation for one enterprise over at most this long, without buckets, is light: it runs
on the request's connection; anything more runs in a worker process."""

GROUP_FAN_OUT = 4
"""Members of a group computed side by side, each on a connection of its own."""


def light(start: datetime, end: datetime, members: int = 1, bucket: str | None = None) -> bool:
    return members == 1 and bucket is None and end - start <= LIGHT_WINDOW


def lend(conn: AsyncConnection[Any]) -> Connect:
    """A job's ``connect`` that hands it ``conn`` (for a light job run on a request's own)."""

    @contextlib.asynccontextmanager
    async def connect() -> Any:
        yield conn

    return connect


async def report_job(
    connect: Connect,
    subject: dict[str, Any],
    ids: list[int],
    window: report.Window,
    thresholds: Thresholds,
    bucket: str | None,
    timezone: str,
) -> IndicatorReport:
    """the report of one enterprise (``ids`` of one) or of a group, whose members
    are computed side by side on up to :data:`GROUP_FAN_OUT` connections, for the window and
    each of its buckets."""
    async with contextlib.AsyncExitStack() as stack:
        free: asyncio.Queue[AsyncConnection[Any]] = asyncio.Queue()
        fan_out = min(len(ids), GROUP_FAN_OUT)

        async def lent() -> AsyncConnection[Any]:
            """A free connection, or a new one while fewer than ``fan_out`` are open (opened
            side by side as the members start, not one after the other before they do)."""
            nonlocal fan_out
            if free.empty() and fan_out > 0:
                fan_out -= 1
                return await stack.enter_async_context(connect())
            return await free.get()

        async def one(eid: int, start: datetime, end: datetime) -> list[Indicator]:
            conn = await lent()
            try:
                result = await ind.enterprise_indicators(conn, eid, start, end, thresholds)
            finally:
                free.put_nowait(conn)
            return report.enterprise_indicators(result)

        async def values(start: datetime, end: datetime) -> tuple[list[Indicator], list[Any]]:
            computed = await asyncio.gather(*(one(eid, start, end) for eid in ids))
            per = [({"id": eid}, items) for eid, items in zip(ids, computed, strict=True)]
            if subject["kind"] == "enterprise":
                return per[0][1], []
            return report.group_indicators(per), per

        headline, per = await values(window.start, window.end)
        body = IndicatorReport(subject=subject, window=window, indicators=headline)
        if per:
            body.members = [
                {**who, "indicators": [i.model_dump() for i in items]} for who, items in per
            ]
        if bucket:
            cuts = buckets(window.start, window.end, bucket, timezone)  # type: ignore[arg-type]
            body.buckets = [
                report.Bucket(start=a, end=b, indicators=(await values(a, b))[0]) for a, b in cuts
            ]
        return body


async def explain_job(
    connect: Connect,
    enterprise_id: int,
    subject: dict[str, Any],
    window: report.Window,
    thresholds: Thresholds,
    bucket: str | None = None,
    timezone: str = "UTC",
) -> report.Explanation:
    """why each key process of an enterprise counted or not, and the OEE of the window and
    of each of its buckets."""
    async with connect() as conn:
        result = await ind.enterprise_indicators(
            conn, enterprise_id, window.start, window.end, thresholds, with_oee=True
        )
        body = report.explanation(subject, window, result)
        if bucket:
            cuts = buckets(window.start, window.end, bucket, timezone)  # type: ignore[arg-type]
            body.buckets = [
                report.oee_bucket(
                    await ind.enterprise_indicators(
                        conn, enterprise_id, a, b, thresholds, with_oee=True
                    )
                )
                for a, b in cuts
            ]
    return body


async def indicators_job(
    connect: Connect, enterprise_id: int, start: datetime, end: datetime, thresholds: Thresholds
) -> list[Indicator]:
    """The indicators of one enterprise over one window."""
    async with connect() as conn:
        result = await ind.enterprise_indicators(conn, enterprise_id, start, end, thresholds)
    return report.enterprise_indicators(result)
