"""The partner HTTP API: token endpoint, clients, catalog, grants and the audit log.

Every error has the body ``{"error": <code>, "detail": ...}``. Denials name a reason code.
Data endpoints live in :mod:`plantwire_platform.partner_feed`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

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

from plantwire_platform import partner_audit as audit
from plantwire_platform import partner_catalog as catalog
from plantwire_platform import partner_grants as grants
from plantwire_platform import partner_tokens as tokens
from plantwire_platform.partner_data import ResultCache
from plantwire_platform.partner_limits import RateLimiter
from plantwire_platform.partner_tokens import Caller
from plantwire_platform.settings import PlatformSettings


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
    """What the partner routes share: signing key, token lifetime, rate limiter, body limit."""

    key: str
    ttl_s: int
    limiter: RateLimiter
    max_body: int
    cache: ResultCache


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
        key,
        settings.token_ttl_s,
        limiter,
        settings.partner_max_body_bytes,
        ResultCache(settings.partner_cache_s),
    )


def router(settings: PlatformSettings) -> APIRouter:
    """All partner routes (token, admin, catalog, grants, audit, data)."""
    from plantwire_platform import partner_admin, partner_feed, partner_stream

    ctx = context(settings)

    route = type("LimitedRoute", (LimitedRoute,), {"max_body": ctx.max_body})
    top = APIRouter(responses=ERRORS)
    top.include_router(_token_routes(ctx, route))
    authed = APIRouter(
        prefix="/partner/v1", dependencies=[Depends(_authenticated(ctx))], route_class=route
    )
    partner_admin.routes(authed)
    _grant_routes(authed)
    partner_feed.routes(authed, ctx)
    partner_stream.routes(authed)
    top.include_router(authed)
    return top


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
            caller = tokens.verify_token(token.strip(), ctx.key)
        except tokens.TokenError as exc:
            raise PartnerError(
                401, "invalid_token", str(exc), {"WWW-Authenticate": "Bearer"}
            ) from None
        wait = ctx.limiter.take(caller.client_id)
        if wait > 0:
            raise PartnerError(
                429,
                "rate_limited",
                "too many requests",
                {"Retry-After": RateLimiter.retry_after(wait)},
            )
        request.state.caller = caller
        return caller

    return who


def current(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


Who = Annotated[Caller, Depends(current)]


async def record(conn: AsyncConnection[Any], caller: Caller, **fields: Any) -> None:
    """Append one audit entry, committing it with what the request did so far."""
    entry = {
        "supplier_id": None,
        "partner_id": caller.enterprise_id,
        "dataset_id": None,
        "grant_id": None,
        "reason": "",
        "rows": 0,
        **fields,
    }
    await audit.append(
        conn, audit.Entry(client_id=caller.client_id, actor_id=caller.enterprise_id, **entry)
    )


# -- token ---------------------------------------------------------------------------------------


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
}


def _token_routes(ctx: Context, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(tags=["partner: identity"], route_class=route)

    @r.post(
        "/oauth/token",
        response_model=TokenResponse,
        openapi_extra=_TOKEN_BODY,
    )
    async def token(request: Request, conn: Conn) -> TokenResponse:
        """OAuth2 client credentials (RFC 6749 section 4.4): form fields or HTTP Basic."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        field = {k: v[0] for k, v in form.items() if v}
        client_id, secret = field.get("client_id"), field.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise PartnerError(401, "invalid_client", "malformed Basic credentials") from None
        if field.get("grant_type") != "client_credentials":
            raise PartnerError(400, "unsupported_grant_type", "use client_credentials")
        if not client_id or not secret:
            raise PartnerError(400, "invalid_request", "client_id and client_secret required")
        wait = ctx.limiter.take(f"token:{client_id}")
        if wait > 0:
            raise PartnerError(
                429,
                "rate_limited",
                "too many requests",
                {"Retry-After": RateLimiter.retry_after(wait)},
            )
        caller = await tokens.authenticate(conn, client_id, secret)
        if caller is None:
            raise PartnerError(401, "invalid_client", "unknown client or wrong secret")
        return TokenResponse(
            access_token=tokens.issue_token(caller, ctx.key, ctx.ttl_s), expires_in=ctx.ttl_s
        )

    return r


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


def _grant_routes(r: APIRouter) -> None:
    tags: list[str | Any] = ["partner: grants"]

    @r.post("/grants", response_model=grants.Grant, status_code=201, tags=tags)
    async def request_grant(conn: Conn, caller: Who, body: grants.GrantRequest) -> grants.Grant:
        """Ask a supplier for a dataset (partner clients and enterprise admins)."""
        if caller.enterprise_id is None:
            raise PartnerError(403, "role_forbidden", "platform admins hold no grants")
        d = await catalog.visible(conn, caller.enterprise_id, body.dataset_id)
        if d is None:
            raise PartnerError(404, "not_found", "no such dataset")
        if d.enterprise_id == caller.enterprise_id:
            raise PartnerError(422, "invalid_request", "an enterprise needs no grant of its own")
        reason, detail = grants.request_refusal(d, body)
        if reason is None:
            detail = await grants.scope_error(conn, d.enterprise_id, body)
            reason = "out_of_scope" if detail else None
        if reason is not None:
            await record(
                conn,
                caller,
                supplier_id=d.enterprise_id,
                dataset_id=d.id,
                action="grant.request",
                outcome="denied",
                reason=reason,
                status=403,
            )
            raise PartnerError(403, reason, detail)
        made = await grants.create(conn, d, caller.enterprise_id, body, caller.client_id)
        await record(
            conn,
            caller,
            supplier_id=d.enterprise_id,
            dataset_id=d.id,
            grant_id=made.id,
            action="grant.request",
            outcome="allowed",
            status=201,
        )
        return made

    @r.get("/grants", tags=tags)
    async def list_grants(
        conn: Conn, caller: Who, cursor: Cursor = None, limit: Limit = 100
    ) -> dict[str, Any]:
        """Grants the caller's enterprise gives or holds, by id."""
        found = await grants.listing(conn, caller.enterprise_id, page_cursor(cursor), limit)
        nxt = str(found[-1].id) if len(found) == limit else None
        return {"items": jsonable_encoder(found), "next_cursor": nxt}

    @r.get("/grants/{grant_id}", response_model=grants.Grant, tags=tags)
    async def get_grant(conn: Conn, caller: Who, grant_id: Id) -> grants.Grant:
        found = await grants.get(conn, grant_id, caller.enterprise_id)
        if found is None:
            raise PartnerError(404, "not_found", "no such grant")
        return found

    @r.post("/grants/{grant_id}/{action}", response_model=grants.Grant, tags=tags)
    async def act(conn: Conn, caller: Who, grant_id: Id, action: grants.Action) -> grants.Grant:
        """approve / reject / revoke: the supplier's enterprise admin; activate / terminate:
        the partner enterprise's clients."""
        g = await grants.get(conn, grant_id, caller.enterprise_id)
        if g is None:
            raise PartnerError(404, "not_found", "no such grant")
        if caller.enterprise_id is None:
            raise PartnerError(403, "role_forbidden", "grants are decided by their parties")
        side = grants.TRANSITIONS[action][0]
        mine = g.supplier_id if side == "supplier" else g.partner_id
        if mine != caller.enterprise_id or (
            side == "supplier" and caller.role != "enterprise_admin"
        ):
            raise PartnerError(403, "role_forbidden", f"{action} is for the {side}")
        done = await grants.transition(conn, grant_id, action, caller.client_id)
        await record(
            conn,
            caller,
            supplier_id=g.supplier_id,
            partner_id=g.partner_id,
            dataset_id=g.dataset_id,
            grant_id=g.id,
            action=f"grant.{action}",
            outcome="allowed" if done else "denied",
            reason="" if done else "conflict",
            status=200 if done else 409,
        )
        if done is None:
            raise PartnerError(409, "conflict", f"cannot {action} a grant that is {g.status}")
        return done
