"""``GET /api/v1/enterprises/{id}/sites/{site}/equipment/{equipment}/history``: one machine
over a window: its mode and execution state intervals (a Gantt timeline), chosen numeric
metrics (averaged into at most :data:`MAX_POINTS` points), its online sessions, and the offset
of its clock: the latest value up to the window's end of the metric the gateway reports it in
(:data:`plantwire_bus.state.CLOCK_OFFSET_METRIC`, milliseconds), None while no gateway reports
it. The same authorization as the enterprise's detail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from plantwire_bus.state import CLOCK_OFFSET_METRIC, EXECUTION_METRIC, MODE_METRIC
from plantwire_platform.accounts.access import require_enterprise
from plantwire_platform.api.routes import reading
from plantwire_platform.errors import ApiError
from plantwire_platform.translation import Text

MAX_POINTS = 600
MAX_METRICS = 8
_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
_LATEST = datetime(2199, 12, 31, tzinfo=UTC)


class Interval(BaseModel):
    start: datetime
    end: datetime | None = Field(description="None while in force")
    value: str | None


class Point(BaseModel):
    ts: datetime = Field(description="the start of the bucket (or the sample's time)")
    value: float | None


class Series(BaseModel):
    metric: str
    bucket_s: float = Field(description="seconds averaged into one point (0: raw samples)")
    points: list[Point]


class Session(BaseModel):
    online_at: datetime
    offline_at: datetime | None


class Clock(BaseModel):
    offset_s: float | None = Field(
        description="device clock minus gateway clock, as the gateway last reported it"
    )
    at: datetime | None = Field(description="when it was reported")


class MachineHistory(BaseModel):
    equipment: dict[str, Any]
    start: datetime
    end: datetime
    mode: list[Interval]
    execution: list[Interval]
    metrics: list[str] = Field(description="the numeric metrics the machine has")
    series: list[Series]
    sessions: list[Session]
    clock: Clock


def _utc(ts: datetime) -> datetime:
    at = ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    if not _EARLIEST <= at <= _LATEST:
        raise ApiError(422, "invalid_request", Text("time.bounds"))
    return at


async def _machine(
    conn: AsyncConnection[Any], enterprise_id: int, site: str, code: str
) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT q.id, q.code, q.name, s.code AS site, s.timezone, l.code AS line,"
            " q.control_type, q.declared_nc FROM equipment q JOIN site s ON s.id = q.site_id"
            " LEFT JOIN line l ON l.id = q.line_id"
            " WHERE s.enterprise_id = %s AND s.code = %s AND q.code = %s",
            (enterprise_id, site, code),
        )
        row = await cur.fetchone()
    if row is None:
        raise ApiError(404, "not_found", Text("equipment.missing", code=code, site=site))
    return row


async def _intervals(
    conn: AsyncConnection[Any], equipment_id: int, metric: str, start: datetime, end: datetime
) -> list[Interval]:
    cur = await conn.execute(
        "SELECT si.start_at, si.end_at, si.value FROM series r"
        " JOIN state_interval si ON si.series_id = r.id"
        " WHERE r.equipment_id = %s AND r.metric = %s AND si.start_at < %s"
        " AND (si.end_at IS NULL OR si.end_at > %s) ORDER BY si.start_at",
        (equipment_id, metric, end, start),
    )
    return [Interval(start=a, end=b, value=v) for a, b, v in await cur.fetchall()]


async def _series(
    conn: AsyncConnection[Any], equipment_id: int, metric: str, start: datetime, end: datetime
) -> Series:
    span = (end - start).total_seconds()
    bucket = max(1.0, span / MAX_POINTS)
    cur = await conn.execute(
        "SELECT date_bin(make_interval(secs => %(b)s), n.ts, %(start)s) AS t, avg(n.value)"
        " FROM series r JOIN sample_num_all n ON n.series_id = r.id"
        " WHERE r.equipment_id = %(e)s AND r.metric = %(m)s"
        " AND n.ts >= %(start)s AND n.ts < %(end)s GROUP BY t ORDER BY t",
        {"b": bucket, "start": start, "end": end, "e": equipment_id, "m": metric},
    )
    points = [Point(ts=t, value=v) for t, v in await cur.fetchall()]
    return Series(metric=metric, bucket_s=bucket, points=points)


async def _clock(conn: AsyncConnection[Any], equipment_id: int, end: datetime) -> Clock:
    cur = await conn.execute(
        "SELECT n.value / 1000.0, n.ts FROM series r JOIN sample_num_all n ON n.series_id = r.id"
        " WHERE r.equipment_id = %s AND r.metric = %s AND n.ts <= %s ORDER BY n.ts DESC LIMIT 1",
        (equipment_id, CLOCK_OFFSET_METRIC, end),
    )
    row = await cur.fetchone()
    return Clock(offset_s=row[0], at=row[1]) if row else Clock(offset_s=None, at=None)


def routes(router: APIRouter) -> None:
    """Add the machine history route to the ``/api/v1`` router."""

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/sites/{site}/equipment/{equipment}/history",
        response_model=MachineHistory,
        tags=["machines"],
        name="enterprise.machine",
    )
    async def history(
        request: Request,
        enterprise_id: int,
        site: str,
        equipment: str,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
        metric: Annotated[list[str] | None, Query(max_length=MAX_METRICS)] = None,
    ) -> MachineHistory:
        """One machine over ``from``..``to`` (default: the last hour, at most the API's window
        limit): its mode and execution intervals, the ``metric`` series asked for (averaged
        into at most 600 points), its online sessions and its clock offset (its own
        people)."""
        stop = _utc(end) if end else datetime.now(UTC)
        begin = _utc(start) if start else stop - timedelta(hours=1)
        limit = timedelta(days=request.app.state.settings.api_max_window_days)
        if begin >= stop or stop - begin > limit:
            raise ApiError(422, "invalid_request", Text("window.order_within", days=limit.days))
        async with reading(request) as conn:
            await require_enterprise(request, conn, enterprise_id, "detail")
            machine = await _machine(conn, enterprise_id, site, equipment)
            eid = machine["id"]
            cur = await conn.execute(
                "SELECT metric FROM series WHERE equipment_id = %s"
                " AND datatype BETWEEN 1 AND 10 ORDER BY metric",  # Sparkplug Int8..Double
                (eid,),
            )
            numeric = [m for (m,) in await cur.fetchall()]
            unknown = sorted(set(metric or ()) - set(numeric))
            if unknown:
                raise ApiError(422, "invalid_request", Text("metric.missing", metric=unknown[0]))
            cur = await conn.execute(
                "SELECT online_at, offline_at FROM connectivity_session WHERE equipment_id = %s"
                " AND online_at < %s AND (offline_at IS NULL OR offline_at > %s)"
                " ORDER BY online_at",
                (eid, stop, begin),
            )
            sessions = [Session(online_at=a, offline_at=b) for a, b in await cur.fetchall()]
            return MachineHistory(
                equipment=machine,
                start=begin,
                end=stop,
                mode=await _intervals(conn, eid, MODE_METRIC, begin, stop),
                execution=await _intervals(conn, eid, EXECUTION_METRIC, begin, stop),
                metrics=numeric,
                series=[await _series(conn, eid, m, begin, stop) for m in metric or ()],
                sessions=sessions,
                clock=await _clock(conn, eid, stop),
            )
