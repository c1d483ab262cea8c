"""Live updates of granted indicators as Server-Sent Events.

A stream is one audited session: its opening decision is audited like any read (one entry);
after that, on every check (every ``interval_s``, at least ``partner_stream_min_interval_s``,
each check taken from the client's rate limit), it re-checks the client and re-decides access
without writing an entry, until access ends: then it audits a denial of the grant, sends one
``denied`` event with the reason code and closes. It sends an ``indicators`` event at the start
and whenever the values change; through a grant they cover whole hours, so checks mostly reuse
computed values. A client holds at most ``partner_streams_per_client`` open streams per API
process. Signed webhooks carry the same snapshots (:mod:`plantwire_platform.partner.webhooks`).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from plantwire_platform.batching import Unavailable
from plantwire_platform.errors import VARY, ApiError, body, language_of
from plantwire_platform.partner.context import Id, Noted, Who, too_many, utc
from plantwire_platform.partner.feed import From, Purpose, snapshot
from plantwire_platform.translation import Text

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context

ACTION = "data.indicators.stream"


def _event(name: str, body: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(jsonable_encoder(body))}\n\n"


class Session(StreamingResponse):
    """A stream that takes one of its client's stream slots and gives it back when it ends,
    however it ends: finished, denied, the client gone, or never sent at all (dropped)."""

    def __init__(self, ctx: Context, client_id: str, content: AsyncIterator[str]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            # its denied event is worded in the reader's language
            headers={"Cache-Control": "no-store", **VARY},
        )
        ctx.streams[client_id] = ctx.streams.get(client_id, 0) + 1
        self.release = weakref.finalize(self, _release, ctx.streams, client_id)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def _release(streams: dict[str, int], client_id: str) -> None:
    left = streams.get(client_id, 1) - 1
    if left > 0:
        streams[client_id] = left
    else:
        streams.pop(client_id, None)


def routes(r: APIRouter, ctx: Context) -> None:
    s = ctx.settings
    every = max(10.0, s.partner_stream_min_interval_s)

    async def stream(
        request: Request,
        caller: Who,
        note: Noted,
        dataset_id: Id,
        purpose: Purpose,
        start: From = None,
        interval_s: float = every,  # its bounds come from the settings: see below
        max_events: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> StreamingResponse:
        """``indicators`` events at the start and on every change (checked each
        ``interval_s``); a final ``denied`` event with the reason code once access ends. One
        audit entry per session (and one more for the denial that ends it)."""
        start = utc(start)
        client = caller.client_id
        if ctx.streams.get(client, 0) >= s.partner_streams_per_client:
            too_many(interval_s, Text("stream.limit", most=s.partner_streams_per_client))
        first = await snapshot(ctx, caller, dataset_id, purpose, start, note)

        language = language_of(request)

        async def events() -> AsyncIterator[str]:
            last, sent = first["indicators"], 1
            yield _event("indicators", first, sent)
            while max_events is None or sent < max_events:
                await asyncio.sleep(interval_s)
                if await request.is_disconnected():
                    return
                if ctx.limiter.take(client) > 0:
                    continue  # over the client's rate: skip this check
                try:
                    standing = await ctx.verifier.clients.submit(caller)
                except Unavailable:
                    continue  # check again next time
                if not standing:  # disabled, deleted, or its tokens revoked since
                    revoked = body("invalid_token", Text("token.revoked"), language)
                    yield _event("denied", revoked)
                    return
                try:
                    now = await snapshot(ctx, caller, dataset_id, purpose, start, action=ACTION)
                except ApiError as exc:
                    if exc.status >= 500:
                        continue  # check again next time
                    yield _event("denied", exc.body(language))
                    return
                if now["indicators"] != last:
                    last, sent = now["indicators"], sent + 1
                    yield _event("indicators", now, sent)

        return Session(ctx, client, events())

    # the bounds of interval_s are the settings' (an annotation naming a local variable would
    # not resolve under postponed evaluation)
    stream.__annotations__["interval_s"] = Annotated[
        float,
        Query(
            ge=s.partner_stream_min_interval_s,
            le=300,
            description="seconds between checks (at least partner_stream_min_interval_s)",
        ),
    ]
    r.get(
        "/datasets/{dataset_id}/indicators/stream",
        tags=["partner: data"],
        summary="Live granted indicators (Server-Sent Events)",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
        name=ACTION,
    )(stream)
