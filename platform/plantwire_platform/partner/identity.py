"""Identity routes: the OAuth2 token endpoint and API clients (registration, secret rotation,
disabling, token revocation). Every change commits with its audit entry."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from pydantic import BaseModel, Field

from plantwire_platform.errors import ApiError
from plantwire_platform.partner import tokens
from plantwire_platform.partner.context import Conn, Note, Noted, Who, record, too_many
from plantwire_platform.partner.tokens import Caller
from plantwire_platform.translation import Text

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context


class ClientIn(BaseModel):
    client_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{3,64}$")
    role: tokens.ClientRole
    enterprise_id: int | None = Field(default=None, ge=1, le=2**62)
    name: str = Field(default="", max_length=200)


class ClientSecret(BaseModel):
    client_id: str
    client_secret: str = Field(description="shown once; stored hashed")


ClientId = Annotated[str, Path(max_length=64)]


async def _managed(
    conn: AsyncConnection[Any], caller: Caller, client_id: str, note: Note
) -> tokens.Client:
    """The client if the caller may manage it: platform admins any, enterprise admins their
    enterprise's (not platform admins), any client itself; 404 otherwise."""
    found = await tokens.get_client(conn, client_id)
    allowed = found is not None and (
        caller.role == "platform_admin"
        or caller.client_id == client_id
        or (caller.role == "enterprise_admin" and found.enterprise_id == caller.enterprise_id)
    )
    if found is None or not allowed:
        raise ApiError(404, "not_found", Text("client.missing"))
    note.partner_id = found.enterprise_id
    return found


def routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: identity"]

    @r.post(
        "/clients", response_model=ClientSecret, status_code=201, tags=tags, name="client.create"
    )
    async def create_client(conn: Conn, caller: Who, note: Noted, body: ClientIn) -> ClientSecret:
        """Register a client. Platform admins register anyone; enterprise admins register
        clients of their own enterprise (not platform admins)."""
        if caller.role not in ("platform_admin", "enterprise_admin") or (
            caller.role == "enterprise_admin"
            and (body.role == "platform_admin" or body.enterprise_id != caller.enterprise_id)
        ):
            raise ApiError(403, "role_forbidden", Text("client.forbidden"))
        if (body.role == "platform_admin") != (body.enterprise_id is None):
            raise ApiError(422, "invalid_request", Text("client.enterprise"))
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM partner_client WHERE id = %s),"
            " (SELECT count(*) FROM enterprise WHERE id = %s)",
            (body.client_id, body.enterprise_id),
        )
        taken, ent = await cur.fetchone() or (0, 0)
        if taken or (body.enterprise_id is not None and not ent):
            raise ApiError(
                409 if taken else 422,
                "conflict" if taken else "invalid_request",
                Text("client.taken" if taken else "client.no_enterprise"),
            )
        secret = await tokens.create_client(
            conn, body.client_id, body.role, body.enterprise_id, body.name
        )
        await record(conn, ctx, note, 201, partner_id=body.enterprise_id)
        return ClientSecret(client_id=body.client_id, client_secret=secret)

    @r.get("/clients/{client_id}", response_model=tokens.Client, tags=tags, name="client.read")
    async def read_client(
        conn: Conn, caller: Who, note: Noted, client_id: ClientId
    ) -> tokens.Client:
        """A client: its role, enterprise and whether it is disabled (never its secrets)."""
        return await _managed(conn, caller, client_id, note)

    @r.post(
        "/clients/{client_id}/secrets",
        response_model=ClientSecret,
        status_code=201,
        tags=tags,
        name="client.rotate_secret",
    )
    async def rotate(
        conn: Conn,
        caller: Who,
        note: Noted,
        client_id: ClientId,
        grace_s: Annotated[int, Query(ge=0, le=7 * 86400)] = 86400,
    ) -> ClientSecret:
        """A new secret; the older ones stay valid for ``grace_s`` seconds (rotation without
        downtime)."""
        await _managed(conn, caller, client_id, note)
        secret = await tokens.rotate_secret(conn, client_id, grace_s)
        await record(conn, ctx, note, 201)
        return ClientSecret(client_id=client_id, client_secret=secret)

    def status_route(path: str, action: str, doc: str) -> None:
        async def change(
            conn: Conn, caller: Who, note: Noted, client_id: ClientId
        ) -> tokens.Client:
            await _managed(conn, caller, client_id, note)
            if action == "revoke_tokens":
                await tokens.revoke_tokens(conn, client_id)
            else:
                await tokens.set_disabled(conn, client_id, action == "disable")
            await record(conn, ctx, note, 200)
            changed = await tokens.get_client(conn, client_id)
            assert changed is not None
            return changed

        change.__doc__ = doc
        r.post(
            f"/clients/{{client_id}}/{path}",
            response_model=tokens.Client,
            tags=tags,
            name=f"client.{action}",
            summary=f"{path.replace('-', ' ').capitalize()} a client",
        )(change)

    status_route(
        "disable",
        "disable",
        "Disable a client: its tokens fail at their next call and it gets no new ones "
        "(platform admins, its enterprise's admins, the client itself).",
    )
    status_route(
        "enable",
        "enable",
        "Enable a disabled client; tokens issued before it was disabled stay invalid.",
    )
    status_route(
        "revoke-tokens",
        "revoke_tokens",
        "Invalidate every token the client holds; it may obtain new ones with its secret.",
    )


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a form-encoded token request, the first value of each."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {k: v[0] for k, v in form.items() if v}


async def grant_token(
    ctx: Context,
    note: Note,
    name: str,
    check: Callable[[], Awaitable[Caller | None]],
    refused: ApiError,
    busy: Text,
) -> TokenResponse:
    """A token for whom ``check`` accepts, throttled per address and per claimed ``name``
    before anything is checked (token buckets, then backoff after failed attempts); a
    refusal raises ``refused``, a throttled request 429 with ``busy``."""
    wait = ctx.throttle.admit(note.source, name)
    if wait > 0:
        too_many(wait, busy)
    caller = await check()
    if caller is None:
        ctx.throttle.failed(note.source, name)
        raise refused
    ctx.throttle.succeeded(name)
    note.caller = caller
    ttl_s = ctx.settings.token_ttl_s
    return TokenResponse(access_token=tokens.issue_token(caller, ctx.key, ttl_s), expires_in=ttl_s)


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


def token_routes(ctx: Context, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(tags=["partner: identity"], route_class=route)

    @r.post(
        "/oauth/token",
        response_model=TokenResponse,
        openapi_extra=_TOKEN_BODY,
        name="token.issue",
    )
    async def token(request: Request, conn: Conn, note: Noted) -> TokenResponse:
        """OAuth2 client credentials (RFC 6749 section 4.4): form fields or HTTP Basic.

        Throttled before any secret is checked: per address and per client id (token buckets,
        then exponential backoff after failed attempts) and for all requests together."""
        field = await form_fields(request)
        client_id, secret = field.get("client_id"), field.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise ApiError(401, "invalid_client", Text("token.basic")) from None
        note.claimed = (client_id or "")[:200]
        if field.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", Text("token.client_grant"))
        if not client_id or not secret:
            raise ApiError(400, "invalid_request", Text("token.client_fields"))
        return await grant_token(
            ctx,
            note,
            client_id,
            lambda: tokens.authenticate(conn, client_id, secret),
            ApiError(401, "invalid_client", Text("token.client_refused")),
            Text("token.client_busy"),
        )

    return r
