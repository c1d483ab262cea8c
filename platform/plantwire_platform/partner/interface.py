"""The partner interface of one API process: its router, and what runs beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends

from plantwire_bus.runner import cancel_until_ended
from plantwire_platform import connections
from plantwire_platform.partner import admin, delivery, feed, identity, stream, tokens, webhooks
from plantwire_platform.partner.context import ERRORS, PartnerRoute, authenticated, context
from plantwire_platform.settings import PlatformSettings
from plantwire_platform.workers import request_options

log = logging.getLogger(__name__)

STOP_S = 10.0
"""Longest the tasks beside the API take to stop."""


class PartnerInterface:
    """The partner interface of one API process: its routes, and what runs beside them while
    the API serves (the client checks, the access decisions, the audit group-commit writer and
    the webhook dispatcher, on a pool of autocommit connections of their own whose statements
    are cut off after ``partner_statement_timeout_s``)."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.ctx = context(settings)

    def route_class(self, max_body: int | None = None) -> type[PartnerRoute]:
        """The audited route class bound to this interface's context: other APIs put their
        routes behind the same token verification and audit with it (bodies of at most
        ``max_body`` bytes, by default the partner interface's limit)."""
        limit = max_body or self.ctx.settings.partner_max_body_bytes
        return type("PartnerRoute", (PartnerRoute,), {"max_body": limit, "ctx": self.ctx})

    def router(self) -> APIRouter:
        """All partner routes (token, clients, catalog, grants, audit, data)."""
        ctx = self.ctx
        route = self.route_class()
        top = APIRouter(responses=ERRORS)
        who = authenticated(ctx, tokens.PARTNER_ROLES)
        authed = APIRouter(prefix="/partner/v1", dependencies=[Depends(who)], route_class=route)
        # routes are matched in order: the busiest first
        feed.routes(authed, ctx)
        stream.routes(authed, ctx)
        admin.routes(authed, ctx)
        webhooks.routes(authed, ctx)  # before /grants/{id}/{action}, which would shadow it
        admin.grant_routes(authed, ctx)
        identity.routes(authed, ctx)
        top.include_router(authed)
        top.include_router(identity.token_routes(ctx, route))
        return top

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        ctx = self.ctx
        timeout_ms = round(ctx.settings.partner_statement_timeout_s * 1000)
        async with connections.pool(
            ctx.settings.database_url,
            options=request_options(timeout_ms),
            autocommit=True,
            min_size=1,
            max_size=ctx.settings.partner_pool_size,
            open=False,
        ) as reads:
            tasks = [
                asyncio.create_task(ctx.verifier.clients.run(reads), name="partner-clients"),
                asyncio.create_task(ctx.decider.run(reads), name="partner-decisions"),
                asyncio.create_task(ctx.audit.run(reads), name="partner-audit"),
                asyncio.create_task(delivery.dispatch(ctx, reads), name="partner-webhooks"),
            ]
            ctx.reads = reads
            await asyncio.sleep(0)  # the tasks start before the first request
            try:
                yield
            finally:
                ctx.reads = None
                stuck = await cancel_until_ended(tasks, STOP_S)
                for task in stuck:
                    log.error("partner task %s did not stop", task.get_name())
                for task in set(tasks) - stuck:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("partner task %s failed: %r", task.get_name(), task.exception())
