"""``GET /api/v1/enterprises/{id}/floor``: every machine of an enterprise (or one site) with its
mode and execution state now, since when, whether it is online, its latest alarm and its part
count, read from the state intervals, sessions, events and samples the ingest keeps.

Asked with ``Accept: text/event-stream`` it answers server-sent events: the floor at once, then
the floor again whenever it changed (looked at every :data:`POLL_S`), a comment every
:data:`KEEP_ALIVE_S`, until ``max_s`` seconds passed (the client reconnects, with a token that is
checked again). Each look takes a pooled connection for one statement only. The same
authorization as the enterprise's detail (its own people and platform admins).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC, PART_COUNT_METRIC
from plantwire_platform.accounts.access import require_enterprise
from plantwire_platform.api.routes import reading
from plantwire_platform.errors import ApiError
from plantwire_platform.translation import Text

POLL_S = 1.0
KEEP_ALIVE_S = 15.0
STREAM_MAX_S = 300
_LATEST = """LEFT JOIN LATERAL (SELECT latest.* FROM series r CROSS JOIN LATERAL
  (SELECT {columns} FROM {table} t WHERE t.series_id = r.id ORDER BY t.{time} DESC LIMIT 1)
  latest WHERE r.equipment_id = q.id AND r.metric = '{metric}'
  ORDER BY latest.{time} DESC LIMIT 1) {alias} ON true"""
"""The latest row of each of the machine's series of one metric (through the table's key,
series then time), the latest of those."""
_STATE = _LATEST.format(
    columns="t.value, t.start_at, t.end_at",
    table="state_interval",
    time="start_at",
    metric="{metric}",
    alias="{alias}",
)
_FLOOR = f"""
SELECT q.id, q.code, q.name, s.code AS site, s.timezone, l.code AS line, q.control_type,
  q.declared_nc, m.value AS mode, m.start_at AS mode_since,
  x.value AS execution, x.start_at AS execution_since,
  c.online_at AS online_since, c.offline_at AS offline_since,
  a.name AS alarm, a.value AS alarm_value, a.ts AS alarm_at,
  p.value AS parts, p.ts AS parts_at
FROM equipment q JOIN site s ON s.id = q.site_id LEFT JOIN line l ON l.id = q.line_id
{_STATE.format(metric=MODE_METRIC, alias="m")}
{_STATE.format(metric=EXECUTION_METRIC, alias="x")}
LEFT JOIN LATERAL (SELECT online_at, offline_at FROM connectivity_session
  WHERE equipment_id = q.id ORDER BY online_at DESC LIMIT 1) c ON true
LEFT JOIN LATERAL (SELECT e.name, e.value, e.ts FROM series r CROSS JOIN LATERAL
  (SELECT v.name, v.value, v.ts FROM event v WHERE v.group_id = r.group_id
    AND v.edge_node_id = r.edge_node_id AND v.device_id = r.device_id AND v.kind = 'alarm'
    AND v.name = r.metric ORDER BY v.ts DESC LIMIT 1) e
  WHERE r.equipment_id = q.id AND lower(split_part(r.metric, '/', 1)) IN ('alarm', 'alarms')
    AND lower(coalesce(e.value, '')) <> ALL (%(cleared)s)
  ORDER BY e.ts DESC LIMIT 1) a ON true
{
    _LATEST.format(
        columns="t.value, t.ts", table="sample_num", time="ts", metric=PART_COUNT_METRIC, alias="p"
    )
}
WHERE s.enterprise_id = %(enterprise)s AND (%(site)s::text IS NULL OR s.code = %(site)s)
ORDER BY s.code, l.code NULLS LAST, q.code
"""
CLEARED = ["", "0", "false", "none", "ok", "cleared"]
"""Values of an alarm metric that say no alarm is raised (compared in lower case)."""


class Machine(BaseModel):
    id: int
    code: str = Field(description="also the Sparkplug device id")
    name: str
    site: str
    timezone: str = Field(description="the site's IANA time zone")
    line: str | None
    control_type: str
    declared_nc: bool
    mode: str | None = Field(description="AUTO, SEMI_AUTO, MDI, MANUAL, SETUP, SERVICE, UNKNOWN")
    mode_since: datetime | None
    execution: str | None = Field(description="EXECUTING, PAUSED, IDLE, FAULT, OFF, NO_DATA")
    execution_since: datetime | None
    online: bool = Field(description="an online session (birth without death) is open")
    online_since: datetime | None
    offline_since: datetime | None
    alarm: str | None = Field(
        description="the alarm metric most recently raised of those whose last value is not a"
        " clearing one (0, false, ok, ...)"
    )
    alarm_value: str | None
    alarm_at: datetime | None
    parts: float | None = Field(description="the last part count (Production/PartCount)")
    parts_at: datetime | None


class Floor(BaseModel):
    enterprise_id: int
    at: datetime = Field(description="when it was read")
    machines: list[Machine]


async def read_floor(
    conn: AsyncConnection[Any], enterprise_id: int, site: str | None
) -> list[Machine]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_FLOOR, {"enterprise": enterprise_id, "site": site, "cleared": CLEARED})
        rows = await cur.fetchall()
    out = []
    for row in rows:
        online = row["online_since"] is not None and row["offline_since"] is None
        out.append(Machine(**row, online=online))
    return out


def _event(floor: Floor) -> bytes:
    return f"event: floor\ndata: {floor.model_dump_json()}\n\n".encode()


def routes(router: APIRouter) -> None:
    """Add the floor route to the ``/api/v1`` router."""

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/floor",
        response_model=Floor,
        tags=["machines"],
        name="enterprise.floor",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def floor(
        request: Request,
        enterprise_id: int,
        site: Annotated[str | None, Query(max_length=64, description="one site's code")] = None,
        max_s: Annotated[
            int, Query(ge=0, le=STREAM_MAX_S, description="stream: end after this long")
        ] = STREAM_MAX_S,
        accept: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Every machine of the enterprise (or of one ``site``) with its mode and execution
        state now and since when, online or not, its raised alarm and part count (its own
        people). With ``Accept: text/event-stream``: the same as server-sent events (``event:
        floor``), again whenever it changes, for ``max_s`` seconds."""
        async with reading(request) as conn:
            await require_enterprise(request, conn, enterprise_id, "detail")
            first = Floor(
                enterprise_id=enterprise_id,
                at=datetime.now(UTC),
                machines=await read_floor(conn, enterprise_id, site),
            )
        if site is not None and not first.machines:
            raise ApiError(404, "not_found", Text("site.missing", site=site))
        if "text/event-stream" not in (accept or ""):
            return first
        pool: AsyncConnectionPool = request.app.state.pool
        return StreamingResponse(
            _stream(request, pool, first, site, max_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


async def _stream(
    request: Request, pool: AsyncConnectionPool, first: Floor, site: str | None, max_s: int
) -> AsyncIterator[bytes]:
    yield _event(first)
    seen = json.dumps([m.model_dump(mode="json") for m in first.machines])
    started = quiet = time.monotonic()
    while time.monotonic() - started < max_s:
        await asyncio.sleep(POLL_S)
        if await request.is_disconnected():
            return
        async with pool.connection() as conn:
            machines = await read_floor(conn, first.enterprise_id, site)
        now = json.dumps([m.model_dump(mode="json") for m in machines])
        if now != seen:
            seen, quiet = now, time.monotonic()
            yield _event(
                Floor(enterprise_id=first.enterprise_id, at=datetime.now(UTC), machines=machines)
            )
        elif time.monotonic() - quiet > KEEP_ALIVE_S:
            quiet = time.monotonic()
            yield b": keep-alive\n\n"
