"""Partner administration routes: the OAuth2 token endpoint, API clients and their secrets, the
catalog, grants and their lifecycle, the audit log."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from plantwire_platform.errors import ApiError
from plantwire_platform.partner import audit, catalog, grants, tokens, webhooks
from plantwire_platform.partner.context import (
    Conn,
    Cursor,
    Id,
    Limit,
    Who,
    page_cursor,
    record,
    throttle,
)

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context


class ClientIn(BaseModel):
    client_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{3,64}$")
    role: tokens.Role
    enterprise_id: int | None = Field(default=None, ge=1, le=2**62)
    name: str = Field(default="", max_length=200)


class ClientSecret(BaseModel):
    client_id: str
    client_secret: str = Field(description="shown once; stored hashed")


def routes(r: APIRouter) -> None:
    @r.post("/clients", response_model=ClientSecret, status_code=201, tags=["partner: identity"])
    async def create_client(conn: Conn, caller: Who, body: ClientIn) -> ClientSecret:
        """Register a client. Platform admins register anyone; enterprise admins register
        clients of their own enterprise (not platform admins)."""
        if caller.role == "partner" or (
            caller.role == "enterprise_admin"
            and (body.role == "platform_admin" or body.enterprise_id != caller.enterprise_id)
        ):
            raise ApiError(403, "role_forbidden", "may not register this client")
        if (body.role == "platform_admin") != (body.enterprise_id is None):
            raise ApiError(422, "invalid_request", "only platform admins lack an enterprise")
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
                "client id taken" if taken else "no such enterprise",
            )
        secret = await tokens.create_client(
            conn, body.client_id, body.role, body.enterprise_id, body.name
        )
        return ClientSecret(client_id=body.client_id, client_secret=secret)

    @r.post(
        "/clients/{client_id}/secrets",
        response_model=ClientSecret,
        status_code=201,
        tags=["partner: identity"],
    )
    async def rotate(
        conn: Conn,
        caller: Who,
        client_id: Annotated[str, Path(max_length=64)],
        grace_s: Annotated[int, Query(ge=0, le=7 * 86400)] = 86400,
    ) -> ClientSecret:
        """A new secret; the older ones stay valid for ``grace_s`` seconds (rotation without
        downtime)."""
        cur = await conn.execute(
            "SELECT enterprise_id FROM partner_client WHERE id = %s", (client_id,)
        )
        row = await cur.fetchone()
        allowed = row is not None and (
            caller.role == "platform_admin"
            or caller.client_id == client_id
            or (caller.role == "enterprise_admin" and row[0] == caller.enterprise_id)
        )
        if not allowed:
            raise ApiError(404, "not_found", "no such client")
        secret = await tokens.rotate_secret(conn, client_id, grace_s)
        return ClientSecret(client_id=client_id, client_secret=secret)

    @r.get("/catalog", response_model=catalog.DatasetPage, tags=["partner: catalog"])
    async def list_catalog(
        conn: Conn,
        caller: Who,
        cursor: Cursor = None,
        limit: Limit = 100,
        enterprise_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        kind: catalog.Kind | None = None,
        grade: catalog.Grade | None = None,
        domain: Annotated[str | None, Query(max_length=64)] = None,
        purpose: Annotated[str | None, Query(max_length=64)] = None,
    ) -> catalog.DatasetPage:
        """Datasets the caller may see, by id, filterable."""
        filters = {
            "enterprise_id": enterprise_id,
            "kind": kind,
            "grade": grade,
            "domain": domain,
            "purpose": purpose,
        }
        items = await catalog.listing(
            conn, caller.enterprise_id, page_cursor(cursor), limit, filters
        )
        nxt = str(items[-1].id) if len(items) == limit else None
        return catalog.DatasetPage(items=items, next_cursor=nxt)

    @r.post("/catalog", response_model=catalog.Dataset, status_code=201, tags=["partner: catalog"])
    async def add_dataset(conn: Conn, caller: Who, body: catalog.DatasetIn) -> catalog.Dataset:
        """Offer a dataset (enterprise admins, for their own enterprise)."""
        if caller.role != "enterprise_admin" or caller.enterprise_id is None:
            raise ApiError(403, "role_forbidden", "enterprise admins only")
        problem = catalog.terms_error(body)
        if problem:
            raise ApiError(422, "invalid_request", problem)
        made = await catalog.create(conn, caller.enterprise_id, body)
        if made is None:
            raise ApiError(409, "conflict", "dataset code taken")
        return made

    @r.get("/catalog/{dataset_id}", response_model=catalog.Dataset, tags=["partner: catalog"])
    async def get_dataset(conn: Conn, caller: Who, dataset_id: Id) -> catalog.Dataset:
        found = await catalog.visible(conn, caller.enterprise_id, dataset_id)
        if found is None:
            raise ApiError(404, "not_found", "no such dataset")
        return found

    @r.get("/audit", tags=["partner: audit"])
    async def read_audit(
        conn: Conn, caller: Who, cursor: Cursor = None, limit: Limit = 100
    ) -> dict[str, Any]:
        """Audit entries where the caller's enterprise is the accessing or the supplying party
        (platform admins: all), by id."""
        found = await audit.entries(conn, caller.enterprise_id, page_cursor(cursor), limit)
        nxt = str(found[-1]["id"]) if len(found) == limit else None
        return {"items": jsonable_encoder(found), "next_cursor": nxt}


def grant_routes(r: APIRouter) -> None:
    tags: list[str | Any] = ["partner: grants"]

    @r.post("/grants", response_model=grants.Grant, status_code=201, tags=tags)
    async def request_grant(conn: Conn, caller: Who, body: grants.GrantRequest) -> grants.Grant:
        """Ask a supplier for a dataset (partner clients and enterprise admins)."""
        if caller.enterprise_id is None:
            raise ApiError(403, "role_forbidden", "platform admins hold no grants")
        d = await catalog.visible(conn, caller.enterprise_id, body.dataset_id)
        if d is None:
            raise ApiError(404, "not_found", "no such dataset")
        if d.enterprise_id == caller.enterprise_id:
            raise ApiError(422, "invalid_request", "an enterprise needs no grant of its own")
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
            raise ApiError(403, reason, detail)
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
            raise ApiError(404, "not_found", "no such grant")
        return found

    @r.post("/grants/{grant_id}/{action}", response_model=grants.Grant, tags=tags)
    async def act(conn: Conn, caller: Who, grant_id: Id, action: grants.Action) -> grants.Grant:
        """approve / reject / revoke: the supplier's enterprise admin; activate / terminate:
        the partner enterprise's clients."""
        g = await grants.get(conn, grant_id, caller.enterprise_id)
        if g is None:
            raise ApiError(404, "not_found", "no such grant")
        if caller.enterprise_id is None:
            raise ApiError(403, "role_forbidden", "grants are decided by their parties")
        side = grants.TRANSITIONS[action][0]
        mine = g.supplier_id if side == "supplier" else g.partner_id
        if mine != caller.enterprise_id or (
            side == "supplier" and caller.role != "enterprise_admin"
        ):
            raise ApiError(403, "role_forbidden", f"{action} is for the {side}")
        done = await grants.transition(conn, grant_id, action, caller.client_id)
        if done is not None and action in ("revoke", "terminate"):
            await webhooks.stop_for_grant(conn, grant_id, grants.inactive_reason(done.status))
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
            raise ApiError(409, "conflict", f"cannot {action} a grant that is {g.status}")
        return done


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


def token_routes(ctx: Context, route: type[APIRoute]) -> APIRouter:
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
                raise ApiError(401, "invalid_client", "malformed Basic credentials") from None
        if field.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "use client_credentials")
        if not client_id or not secret:
            raise ApiError(400, "invalid_request", "client_id and client_secret required")
        throttle(ctx.limiter, f"token:{client_id}")
        caller = await tokens.authenticate(conn, client_id, secret)
        if caller is None:
            raise ApiError(401, "invalid_client", "unknown client or wrong secret")
        ttl_s = ctx.settings.token_ttl_s
        return TokenResponse(
            access_token=tokens.issue_token(caller, ctx.key, ttl_s), expires_in=ttl_s
        )

    return r
