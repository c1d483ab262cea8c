"""Live updates of granted indicators as Server-Sent Events.

The stream re-decides access on every tick (audited like any read): when the grant is revoked,
expires or is terminated, it sends one ``denied`` event with the reason code and ends. It sends
an ``indicators`` event at the start and whenever the values change. Signed webhooks carry the
same snapshots (:mod:`plantwire_platform.partner.webhooks`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse

from plantwire_platform.errors import ApiError
from plantwire_platform.partner.context import Id, Who
from plantwire_platform.partner.feed import From, Purpose, snapshot, utc

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context

ACTION = "data.indicators.stream"


def _event(name: str, body: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(jsonable_encoder(body))}\n\n"


def routes(r: APIRouter, ctx: Context) -> None:
    @r.get(
        "/datasets/{dataset_id}/indicators/stream",
        tags=["partner: data"],
        summary="Live granted indicators (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        caller: Who,
        dataset_id: Id,
        purpose: Purpose,
        start: From = None,
        interval_s: Annotated[float, Query(ge=0.05, le=300)] = 10.0,
        max_events: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> StreamingResponse:
        """``indicators`` events at the start and on every change (checked each
        ``interval_s``); a final ``denied`` event with the reason code once access ends."""
        start = utc(start)
        first = await snapshot(ctx, caller, dataset_id, purpose, start, ACTION)

        async def events() -> AsyncIterator[str]:
            last, sent = first["indicators"], 1
            yield _event("indicators", first, sent)
            while max_events is None or sent < max_events:
                await asyncio.sleep(interval_s)
                if await request.is_disconnected():
                    return
                try:
                    now = await snapshot(ctx, caller, dataset_id, purpose, start, ACTION)
                except ApiError as exc:
                    yield _event("denied", {"error": exc.code, "detail": exc.detail})
                    return
                if now["indicators"] != last:
                    last, sent = now["indicators"], sent + 1
                    yield _event("indicators", now, sent)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )
