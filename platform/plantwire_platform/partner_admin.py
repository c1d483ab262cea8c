"""Partner administration routes: API clients and their secrets, the catalog, the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from plantwire_platform import partner_audit as audit
from plantwire_platform import partner_catalog as catalog
from plantwire_platform import partner_tokens as tokens
from plantwire_platform.partner_api import (
    Conn,
    Cursor,
    Id,
    Limit,
    PartnerError,
    Who,
    page_cursor,
)


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
            raise PartnerError(403, "role_forbidden", "may not register this client")
        if (body.role == "platform_admin") != (body.enterprise_id is None):
            raise PartnerError(422, "invalid_request", "only platform admins lack an enterprise")
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM partner_client WHERE id = %s),"
            " (SELECT count(*) FROM enterprise WHERE id = %s)",
            (body.client_id, body.enterprise_id),
        )
        taken, ent = await cur.fetchone() or (0, 0)
        if taken or (body.enterprise_id is not None and not ent):
            raise PartnerError(
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
            raise PartnerError(404, "not_found", "no such client")
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
            raise PartnerError(403, "role_forbidden", "enterprise admins only")
        problem = catalog.terms_error(body)
        if problem:
            raise PartnerError(422, "invalid_request", problem)
        made = await catalog.create(conn, caller.enterprise_id, body)
        if made is None:
            raise PartnerError(409, "conflict", "dataset code taken")
        return made

    @r.get("/catalog/{dataset_id}", response_model=catalog.Dataset, tags=["partner: catalog"])
    async def get_dataset(conn: Conn, caller: Who, dataset_id: Id) -> catalog.Dataset:
        found = await catalog.visible(conn, caller.enterprise_id, dataset_id)
        if found is None:
            raise PartnerError(404, "not_found", "no such dataset")
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
