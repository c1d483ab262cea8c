"""The partner HTTP API: its shared context, authentication, errors and the token endpoint.

Every error has the body ``{"error": <code>, "detail": ...}``. Denials name a reason code.
Clients, catalog, grants and the audit log: :mod:`plantwire_platform.partner_admin`; data
endpoints: :mod:`plantwire_platform.partner_feed`, ``partner_stream`` and ``partner_webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from plantwire_platform import partner_access as access
from plantwire_platform import partner_audit as audit
from plantwire_platform import partner_tokens as tokens
from plantwire_platform.partner_data import IndicatorCache
from plantwire_platform.partner_limits import RateLimiter
from plantwire_platform.partner_tokens import Caller, TokenVerifier
from plantwire_platform.settings import PlatformSettings

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error: a code (for denials the reason code) and a human-readable detail."""

    error: str
    detail: Any = None


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


class PartnerError(Exception):
    """An error answered with the uniform body."""

    def __init__(
        self, status: int, code: str, detail: Any = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


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
            raise PartnerError(503, "unavailable", "the partner interface is not running")
        return self.reads

    async def audited(self, caller: Caller, **fields: Any) -> None:
        """Append an audit entry of a data read through the group-commit writer; returns once
        it is committed. If it cannot be, the read fails (503) and returns nothing."""
        try:
            await self.audit.append(audit_entry(caller, fields))
        except audit.AuditUnavailable as exc:
            raise PartnerError(
                503, "unavailable", "the access could not be audited, so nothing is returned"
            ) from exc


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


def install_errors(app: FastAPI) -> None:
    """Uniform error bodies for partner errors, request validation errors (422) and the
    framework's own HTTP errors (malformed body, unknown route)."""

    @app.exception_handler(PartnerError)
    async def partner_error(request: Request, exc: PartnerError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"error": code.get(exc.status_code, "error"), "detail": exc.detail},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        return JSONResponse({"error": "invalid_request", "detail": detail}, 422)


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


class PartnerInterface:
    """The partner interface of one API process: its routes, and what runs beside them while
    the API serves (the audit group-commit writer and the webhook dispatcher, on a pool of
    autocommit connections of their own)."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.ctx = context(settings)

    def router(self) -> APIRouter:
        """All partner routes (token, admin, catalog, grants, audit, data)."""
        from plantwire_platform import partner_admin, partner_feed, partner_stream
        from plantwire_platform import partner_webhooks as webhooks

        ctx = self.ctx
        route = type(
            "LimitedRoute", (LimitedRoute,), {"max_body": ctx.settings.partner_max_body_bytes}
        )
        top = APIRouter(responses=ERRORS)
        authed = APIRouter(
            prefix="/partner/v1", dependencies=[Depends(_authenticated(ctx))], route_class=route
        )
        # routes are matched in order: the busiest first
        partner_feed.routes(authed, ctx)
        partner_stream.routes(authed, ctx)
        partner_admin.routes(authed)
        webhooks.routes(authed, ctx)  # before /grants/{id}/{action}, which would shadow it
        partner_admin.grant_routes(authed)
        top.include_router(authed)
        top.include_router(partner_admin.token_routes(ctx, route))
        return top

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        from plantwire_platform import partner_delivery as delivery

        ctx = self.ctx
        async with AsyncConnectionPool(
            ctx.settings.database_url,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=ctx.settings.partner_pool_size,
            open=False,
        ) as reads:
            tasks = [
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
                for task in tasks:
                    task.cancel()
                stopped, stuck = await asyncio.wait(tasks, timeout=10)
                for task in stuck:
                    log.error("partner task %s did not stop", task.get_name())
                for task in stopped:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("partner task %s failed: %r", task.get_name(), task.exception())


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
                raise PartnerError(413, "too_large", f"at most {limit} bytes")
            if "\x00" in request.scope["path"] or b"%00" in request.scope["query_string"]:
                raise PartnerError(422, "invalid_request", _NUL)
            if declared is None and "transfer-encoding" not in request.headers:
                return await handler(request)  # no body to watch (most GETs)
            receive, received = request.receive, 0

            async def counting() -> Message:
                nonlocal received
                message = await receive()
                chunk = message.get("body", b"")
                received += len(chunk)
                if b"\\u0000" in chunk or b"\x00" in chunk:
                    raise PartnerError(422, "invalid_request", _NUL)
                if received > limit:
                    raise PartnerError(413, "too_large", f"at most {limit} bytes")
                return message

            return await handler(Request(request.scope, counting))

        return limited


def _authenticated(ctx: Context) -> Any:
    async def who(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise PartnerError(
                401, "invalid_token", "a Bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        try:
            caller = ctx.verifier.verify(token.strip())
        except tokens.TokenError as exc:
            raise PartnerError(
                401, "invalid_token", str(exc), {"WWW-Authenticate": "Bearer"}
            ) from None
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
        raise PartnerError(
            429, "rate_limited", "too many requests", {"Retry-After": RateLimiter.retry_after(wait)}
        )


# -- paging ------------------------------------------------------------------------------------


def page_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise PartnerError(422, "invalid_request", "malformed cursor")
    return int(cursor)


Cursor = Annotated[str | None, Query(max_length=64, description="from the previous page")]
Limit = Annotated[int, Query(ge=1, le=500)]
Id = Annotated[int, Path(ge=1, le=2**62)]
