"""Live updates of granted indicators as Server-Sent Events.

The stream re-decides access on every tick (audited like any read): when the grant is revoked,
expires or is terminated, it sends one ``denied`` event with the reason code and ends. It sends
an ``indicators`` event at the start and whenever the values change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from plantwire_platform import indicators as ind
from plantwire_platform import partner_data as data
from plantwire_platform import responses as rsp
from plantwire_platform.kpi import Thresholds
from plantwire_platform.partner_api import Conn, Id, PartnerError, Who, record
from plantwire_platform.partner_feed import From, Purpose, access
from plantwire_platform.partner_tokens import Caller


async def snapshot(
    conn: AsyncConnection[Any],
    caller: Caller,
    dataset_id: int,
    purpose: str,
    start: datetime | None,
) -> dict[str, Any]:
    """Access check plus the current indicators over the last hour (or since ``start``),
    clamped to the grant's window in SQL; raises :class:`PartnerError` when denied."""
    end = datetime.now(UTC)
    begin = start or end - timedelta(hours=1)
    d, grant_id = await access(
        conn, caller, dataset_id, "indicators", purpose, {"start": start, "end": None}
    )
    window = await data.indicator_window(
        conn,
        {
            "grant": grant_id,
            "dataset": dataset_id,
            "ent": caller.enterprise_id,
            "start": begin,
            "end": end,
        },
    )
    values: list[rsp.Indicator] = []
    if window is not None and window[1] < window[2]:
        result = await ind.enterprise_indicators(
            conn, window[0], window[1], window[2], Thresholds()
        )
        values = rsp.enterprise_indicators(result)
        begin, end = window[1], window[2]
    await record(
        conn,
        caller,
        supplier_id=d.enterprise_id,
        dataset_id=dataset_id,
        grant_id=grant_id,
        action="data.indicators.stream",
        outcome="allowed",
        status=200,
        rows=len(values),
    )
    return {
        "grant_id": grant_id,
        "from": begin,
        "to": end,
        "indicators": [v.model_dump(exclude_none=True) for v in values],
    }


def _event(name: str, body: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(jsonable_encoder(body))}\n\n"


def routes(r: APIRouter) -> None:
    @r.get(
        "/datasets/{dataset_id}/indicators/stream",
        tags=["partner: data"],
        summary="Live granted indicators (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        conn: Conn,
        caller: Who,
        dataset_id: Id,
        purpose: Purpose,
        start: From = None,
        interval_s: Annotated[float, Query(ge=0.05, le=300)] = 10.0,
        max_events: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> StreamingResponse:
        """``indicators`` events at the start and on every change (checked each
        ``interval_s``); a final ``denied`` event with the reason code once access ends."""
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        first = await snapshot(conn, caller, dataset_id, purpose, start)
        pool: AsyncConnectionPool = request.app.state.pool

        async def events() -> AsyncIterator[str]:
            last, sent = first["indicators"], 1
            yield _event("indicators", first, sent)
            while max_events is None or sent < max_events:
                await asyncio.sleep(interval_s)
                if await request.is_disconnected():
                    return
                async with pool.connection() as own:
                    try:
                        now = await snapshot(own, caller, dataset_id, purpose, start)
                    except PartnerError as exc:
                        yield _event("denied", {"error": exc.code, "detail": exc.detail})
                        return
                if now["indicators"] != last:
                    last, sent = now["indicators"], sent + 1
                    yield _event("indicators", now, sent)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )
