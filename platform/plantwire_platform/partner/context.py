"""What the partner routes share: the context, authentication, throttling, auditing and
paging.

Every error has the uniform body of :mod:`plantwire_platform.errors`; denials name a reason
code. Clients, catalog, grants and the audit log: :mod:`plantwire_platform.partner.admin`; data
endpoints: :mod:`plantwire_platform.partner.feed`, ``stream`` and ``webhooks``; the router
and background tasks: :mod:`plantwire_platform.partner.interface`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.types import Message

from plantwire_platform.errors import ApiError, ErrorBody
from plantwire_platform.partner import access, audit, tokens
from plantwire_platform.partner.data import IndicatorCache
from plantwire_platform.partner.limits import RateLimiter
from plantwire_platform.partner.tokens import Caller, TokenVerifier
from plantwire_platform.settings import PlatformSettings

log = logging.getLogger(__name__)


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d}
    for s, d in {
        400: "malformed request body",
        401: "missing, invalid or expired token",
        403: "denied: no_grant, wrong_purpose, expired, revoked, out_of_scope, grade_forbidden "
        "or role_forbidden",
        404: "not found or not visible to the caller",
        409: "conflict with the current state",
        413: "request body too large",
        422: "invalid request",
        429: "rate limited (see Retry-After)",
        503: "the database or the audit log is unavailable: nothing was returned",
    }.items()
}


@dataclass(slots=True)
class Context:
    """What the partner routes and background tasks share."""

    settings: PlatformSettings
    key: str
    limiter: RateLimiter
    cache: IndicatorCache
    verifier: TokenVerifier
    audit: audit.AuditWriter = field(default_factory=audit.AuditWriter)
    decider: access.Decider = field(default_factory=access.Decider)
    reads: AsyncConnectionPool | None = None  # autocommit connections, while running
    wake_webhooks: asyncio.Event = field(default_factory=asyncio.Event)

    def pool(self) -> AsyncConnectionPool:
        if self.reads is None:
            raise ApiError(503, "unavailable", "the partner interface is not running")
        return self.reads

    async def audited(self, caller: Caller, **fields: Any) -> None:
        """Append an audit entry of a data read through the group-commit writer; returns once
        it is committed. If it cannot be, the read fails (503) and returns nothing."""
        try:
            await self.audit.append(audit_entry(caller, fields))
        except audit.AuditUnavailable as exc:
            raise ApiError(
                503, "unavailable", "the access could not be audited, so nothing is returned"
            ) from exc


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


def context(settings: PlatformSettings) -> Context:
    secret = settings.token_secret
    key = secret.get_secret_value() if secret else secrets.token_urlsafe(48)
    limiter = RateLimiter(settings.partner_rate_per_s, settings.partner_burst)
    return Context(
        settings,
        key,
        limiter,
        IndicatorCache(settings.partner_cache_s),
        TokenVerifier(key),
    )


_NUL = "NUL characters are not accepted (PostgreSQL text cannot hold them)"


class LimitedRoute(APIRoute):
    """A route that refuses request bodies over ``max_body`` bytes before reading them, and
    NUL characters anywhere in the request."""

    max_body = 65_536

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        limit = self.max_body

        async def limited(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                raise ApiError(413, "too_large", f"at most {limit} bytes")
            if "\x00" in request.scope["path"] or b"%00" in request.scope["query_string"]:
                raise ApiError(422, "invalid_request", _NUL)
            if declared is None and "transfer-encoding" not in request.headers:
                return await handler(request)  # no body to watch (most GETs)
            receive, received = request.receive, 0

            async def counting() -> Message:
                nonlocal received
                message = await receive()
                chunk = message.get("body", b"")
                received += len(chunk)
                if b"\\u0000" in chunk or b"\x00" in chunk:
                    raise ApiError(422, "invalid_request", _NUL)
                if received > limit:
                    raise ApiError(413, "too_large", f"at most {limit} bytes")
                return message

            return await handler(Request(request.scope, counting))

        return limited


def authenticated(ctx: Context) -> Any:
    async def who(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401, "invalid_token", "a Bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        try:
            caller = ctx.verifier.verify(token.strip())
        except tokens.TokenError as exc:
            raise ApiError(401, "invalid_token", str(exc), {"WWW-Authenticate": "Bearer"}) from None
        throttle(ctx.limiter, caller.client_id)
        request.state.caller = caller
        return caller

    return who


async def current(request: Request) -> Caller:
    # async: FastAPI would run a plain function in a worker thread, on every call
    caller: Caller = request.state.caller
    return caller


Who = Annotated[Caller, Depends(current)]


async def record(conn: AsyncConnection[Any], caller: Caller, **fields: Any) -> None:
    """Append one audit entry, committing it with what the request did so far."""
    await audit.append(conn, audit_entry(caller, fields))


def audit_entry(caller: Caller, fields: dict[str, Any]) -> audit.Entry:
    """The audit entry of an access by ``caller``: ``fields`` (action, outcome, status and
    what is known of supplier, dataset, grant, reason, rows); the partner is the caller's
    enterprise unless given."""
    entry: dict[str, Any] = {
        "supplier_id": None,
        "partner_id": caller.enterprise_id,
        "dataset_id": None,
        "grant_id": None,
        "reason": "",
        "rows": 0,
        **fields,
    }
    return audit.Entry(client_id=caller.client_id, actor_id=caller.enterprise_id, **entry)


def throttle(limiter: RateLimiter, key: str) -> None:
    """Take a request of ``key`` from ``limiter``; 429 with ``Retry-After`` when over."""
    wait = limiter.take(key)
    if wait > 0:
        raise ApiError(
            429, "rate_limited", "too many requests", {"Retry-After": RateLimiter.retry_after(wait)}
        )


# -- paging ------------------------------------------------------------------------------------


def page_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise ApiError(422, "invalid_request", "malformed cursor")
    return int(cursor)


Cursor = Annotated[str | None, Query(max_length=64, description="from the previous page")]
Limit = Annotated[int, Query(ge=1, le=500)]
Id = Annotated[int, Path(ge=1, le=2**62)]
