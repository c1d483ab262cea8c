"""What the partner routes share: the context, authentication, throttling, the audit of every
decision, and paging.

Every partner route is a :class:`PartnerRoute`: it refuses oversized bodies before reading them,
and records one audit entry for every request that reaches it (allowed, denied with the reason
code, or failed), committed before the answer leaves. Handlers add what they know (supplier,
dataset, grant, rows) to the request's :class:`Note`; a change commits together with its entry
(:func:`record`). Every error has the uniform body of :mod:`plantwire_platform.errors`.

Clients and tokens: :mod:`plantwire_platform.partner.identity`; catalog, grants and the audit
log: :mod:`plantwire_platform.partner.admin`; data endpoints:
:mod:`plantwire_platform.partner.feed`, ``stream`` and ``webhooks``; the router and background
tasks: :mod:`plantwire_platform.partner.interface`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException
from starlette.types import Message

from plantwire_platform.batching import Unavailable
from plantwire_platform.errors import BAD_VALUES, BROKEN, ApiError, ErrorBody, code_of
from plantwire_platform.partner import access, tokens
from plantwire_platform.partner.audit import (
    AuditUnavailable,
    AuditWriter,
    ChainBroken,
    Entry,
    append,
)
from plantwire_platform.partner.audit_chain import AuditKey
from plantwire_platform.partner.data import IndicatorCache
from plantwire_platform.partner.limits import RateLimiter, TokenThrottle
from plantwire_platform.partner.tokens import Caller, TokenVerifier
from plantwire_platform.settings import PlatformSettings
from plantwire_platform.translation import Text
from plantwire_platform.workers import WorkerPool
from plantwire_platform.workload import Workload

log = logging.getLogger(__name__)


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody, "description": d}
    for s, d in {
        400: "malformed request body",
        401: "missing, invalid or expired token, or its client is disabled, deleted or had its "
        "tokens revoked",
        403: "denied: no_grant, wrong_purpose, expired, revoked, out_of_scope, grade_forbidden "
        "or role_forbidden",
        404: "not found or not visible to the caller",
        409: "conflict with the current state",
        413: "request body too large",
        422: "invalid request",
        429: "rate limited (see Retry-After)",
        500: "the platform failed (audited); nothing was returned",
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
    throttle: TokenThrottle
    audit_key: AuditKey | None
    audit: AuditWriter
    decider: access.Decider = field(default_factory=access.Decider)
    reads: AsyncConnectionPool | None = None  # autocommit connections, while running
    wake_webhooks: asyncio.Event = field(default_factory=asyncio.Event)
    streams: dict[str, int] = field(default_factory=dict)  # open live streams per client
    workers: WorkerPool | None = None  # heavy indicator computations run there
    workload: Workload | None = None  # computation slots, shared with /api/v1

    def pool(self) -> AsyncConnectionPool:
        if self.reads is None:
            raise ApiError(503, "unavailable", Text("partner.not_running"))
        return self.reads

    async def audited(self, caller: Caller, **fields: Any) -> None:
        """Append an audit entry outside a request (webhooks, live stream checks) through the
        group-commit writer; returns once it is committed. If it cannot be, the access fails
        (503) and nothing is sent."""
        await self.commit(entry_of(caller.client_id, caller, fields))

    async def commit(self, entry: Entry) -> None:
        try:
            await self.audit.append(entry)
        except AuditUnavailable as exc:
            raise ApiError(
                503,
                "unavailable",
                Text("audit.unavailable"),
                {"Retry-After": "5"},
            ) from exc


def entry_of(client_id: str, caller: Caller | None, fields: dict[str, Any]) -> Entry:
    """The audit entry of a decision about ``caller`` (or an unidentified ``client_id``):
    ``fields`` (action, outcome, status and what is known of supplier, dataset, grant, reason,
    rows, source); the partner is the caller's enterprise unless given."""
    ent = caller.enterprise_id if caller else None
    entry: dict[str, Any] = {
        "supplier_id": None,
        "partner_id": ent,
        "dataset_id": None,
        "grant_id": None,
        "reason": "",
        "rows": 0,
        **fields,
    }
    return Entry(client_id=client_id, actor_id=ent, **entry)


@dataclass(slots=True)
class Note:
    """What a request's audit entry will say; handlers fill in what they learn."""

    action: str
    source: str = ""
    caller: Caller | None = None
    claimed: str = ""  # the client id a caller gave before it was identified
    supplier_id: int | None = None
    partner_id: int | None = None
    dataset_id: int | None = None
    grant_id: int | None = None
    rows: int = 0
    reason: str = ""  # why an allowed request was allowed (a denial's reason is its error code)
    recorded: bool = False  # its entry committed with the change it records
    required: bool = True  # no answer without the entry (verification answers regardless)

    def entry(self, outcome: str, reason: str, status: int) -> Entry:
        who = self.caller.client_id if self.caller else self.claimed
        known = {
            k: getattr(self, k)
            for k in ("supplier_id", "partner_id", "dataset_id", "grant_id")
            if getattr(self, k) is not None
        }
        fields = {"action": self.action, "outcome": outcome, "reason": reason, "status": status}
        return entry_of(
            who, self.caller, {**known, **fields, "rows": self.rows, "source": self.source}
        )


async def note_of(request: Request) -> Note:
    found: Note = request.state.note
    return found


Noted = Annotated[Note, Depends(note_of)]


async def record(
    conn: AsyncConnection[Any], ctx: Context, note: Note, status: int, **known: Any
) -> None:
    """Commit what the request changed on ``conn`` together with its (allowed) audit entry."""
    for name, value in known.items():
        setattr(note, name, value)
    if ctx.audit_key is None:
        raise ApiError(503, "unavailable", Text("audit.no_key"))
    try:
        await append(conn, ctx.audit_key, note.entry("allowed", note.reason, status))
    except ChainBroken as exc:
        raise ApiError(503, "unavailable", exc.text) from None
    note.recorded = True


def context(settings: PlatformSettings) -> Context:
    secret = settings.token_secret
    key = secret.get_secret_value() if secret else secrets.token_urlsafe(48)
    audit_secret = settings.audit_key
    audit_key = AuditKey(audit_secret.get_secret_value()) if audit_secret else None
    s = settings
    return Context(
        settings,
        key,
        RateLimiter(s.partner_rate_per_s, s.partner_burst),
        IndicatorCache(s.partner_cache_s),
        TokenVerifier(key),
        TokenThrottle(
            s.token_attempts_per_s,
            s.token_attempts_burst,
            s.token_ip_attempts_per_s,
            s.token_ip_attempts_burst,
            s.token_id_attempts_per_s,
            s.token_id_attempts_burst,
            s.token_free_failures,
            s.token_backoff_max_s,
        ),
        audit_key,
        AuditWriter(audit_key),
    )


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]

_NUL = Text("body.nul")


class PartnerRoute(APIRoute):
    """A partner route: refuses request bodies over ``max_body`` bytes before reading them and
    NUL characters in them, and audits the request's decision (:class:`Note`) before its
    answer leaves."""

    max_body = 65_536
    ctx: Context

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = self._limited(super().get_route_handler())
        ctx, action = self.ctx, self.name

        async def audited(request: Request) -> Response:
            if ctx.audit_key is None:
                raise ApiError(503, "unavailable", Text("audit.needs_key"))
            note = Note(action, request.client.host if request.client else "")
            request.state.note = note
            try:
                response = await handler(request)
            except ApiError as exc:
                await decided(ctx, note, exc.status, exc.code)
                raise
            except RequestValidationError:
                await decided(ctx, note, 422, "invalid_request")
                raise
            except HTTPException as exc:
                await decided(ctx, note, exc.status_code, code_of(exc.status_code))
                raise
            except tuple(BAD_VALUES):  # answered as errors.install says
                await decided(ctx, note, 422, "invalid_request")
                raise
            except tuple(BROKEN):
                await decided(ctx, note, 409, "conflict")
                raise
            except Exception:
                await decided(ctx, note, 500, "internal_error")
                raise
            await decided(ctx, note, response.status_code, note.reason)
            return response

        return audited

    def _limited(
        self, handler: Callable[[Request], Coroutine[Any, Any, Response]]
    ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        limit = self.max_body

        async def limited(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                raise ApiError(413, "too_large", Text("body.too_large", limit=limit))
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
                    raise ApiError(413, "too_large", Text("body.too_large", limit=limit))
                return message

            return await handler(Request(request.scope, counting))

        return limited


async def decided(ctx: Context, note: Note, status: int, reason: str) -> None:
    """Audit a request's outcome unless its handler did with its change; an allowed or
    refused request whose entry cannot be committed answers 503 instead."""
    if note.recorded:
        return
    outcome = "allowed" if status < 400 else "denied" if status < 500 else "failed"
    try:
        await ctx.commit(note.entry(outcome, reason, status))
    except ApiError:
        if status >= 500 or not note.required:  # the answer may go without its entry
            log.warning("%s (%s) could not be audited", note.action, status)
            return
        raise


def authenticated(ctx: Context, roles: frozenset[tokens.Role] | None = None) -> Any:
    """The dependency identifying a route's caller by its Bearer token (401 without a valid
    one); with ``roles``, callers of other roles are refused (403 ``role_forbidden``)."""

    async def who(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Caller:
        note: Note = request.state.note
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401, "invalid_token", Text("token.required"), {"WWW-Authenticate": "Bearer"}
            )
        try:
            caller = ctx.verifier.verify(token.strip())
            note.claimed = caller.client_id
            throttle(ctx.limiter, caller.client_id)
            caller = await ctx.verifier.caller(token.strip())
        except tokens.TokenError as exc:
            raise ApiError(401, "invalid_token", exc.text, {"WWW-Authenticate": "Bearer"}) from None
        except Unavailable as exc:
            raise ApiError(
                503, "unavailable", Text("token.unavailable"), {"Retry-After": "5"}
            ) from exc
        note.caller = caller
        if roles is not None and caller.role not in roles:
            raise ApiError(403, "role_forbidden", Text("role.routes", role=caller.role))
        request.state.caller = caller
        return caller

    return who


async def current(request: Request) -> Caller:
    # async: FastAPI would run a plain function in a worker thread, on every call
    caller: Caller = request.state.caller
    return caller


Who = Annotated[Caller, Depends(current)]


def throttle(limiter: RateLimiter, key: str) -> None:
    """Take a request of ``key`` from ``limiter``; 429 with ``Retry-After`` when over."""
    wait = limiter.take(key)
    if wait > 0:
        too_many(wait)


_TOO_MANY = Text("rate.limited")


def too_many(wait_s: float, detail: Text = _TOO_MANY) -> None:
    raise ApiError(429, "rate_limited", detail, {"Retry-After": RateLimiter.retry_after(wait_s)})


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""The times a request may name, as on ``/api/v1``."""


def utc(ts: datetime | None) -> datetime | None:
    """A request's time in UTC (a naive one is taken as UTC); 422 outside 1970..2200."""
    if ts is None:
        return None
    try:
        at = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        at = None
    if at is None or not EARLIEST <= at <= LATEST:
        raise ApiError(422, "invalid_request", Text("time.bounds"))
    return at


# -- paging ------------------------------------------------------------------------------------


def page_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise ApiError(422, "invalid_request", Text("cursor.malformed"))
    return int(cursor)


Cursor = Annotated[str | None, Query(max_length=64, description="from the previous page")]
Limit = Annotated[int, Query(ge=1, le=500)]
Id = Annotated[int, Path(ge=1, le=2**62)]
