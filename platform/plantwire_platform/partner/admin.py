"""Partner administration routes: the catalog, grants and their lifecycle, the audit log (its
entries, its signed head and its verification)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from plantwire_platform.errors import ApiError, language_of
from plantwire_platform.partner import audit, audit_chain, catalog, grants, webhooks
from plantwire_platform.partner.context import (
    Conn,
    Cursor,
    Id,
    Limit,
    Note,
    Noted,
    Who,
    page_cursor,
    record,
    utc,
)
from plantwire_platform.translation import Text

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context


def routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: catalog"]

    @r.get("/catalog", response_model=catalog.DatasetPage, tags=tags, name="catalog.list")
    async def list_catalog(
        conn: Conn,
        caller: Who,
        note: Noted,
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
        note.rows = len(items)
        nxt = str(items[-1].id) if len(items) == limit else None
        return catalog.DatasetPage(items=items, next_cursor=nxt)

    @r.post(
        "/catalog",
        response_model=catalog.Dataset,
        status_code=201,
        tags=tags,
        name="catalog.create",
    )
    async def add_dataset(
        conn: Conn, caller: Who, note: Noted, body: catalog.DatasetIn
    ) -> catalog.Dataset:
        """Offer a dataset (enterprise admins, for their own enterprise)."""
        if caller.role != "enterprise_admin" or caller.enterprise_id is None:
            raise ApiError(403, "role_forbidden", Text("role.enterprise_admins"))
        problem = catalog.terms_error(body)
        if problem:
            raise ApiError(422, "invalid_request", problem)
        made = await catalog.create(conn, caller.enterprise_id, body)
        if made is None:
            raise ApiError(409, "conflict", Text("dataset.taken"))
        await record(conn, ctx, note, 201, supplier_id=caller.enterprise_id, dataset_id=made.id)
        return made

    @r.get("/catalog/{dataset_id}", response_model=catalog.Dataset, tags=tags, name="catalog.read")
    async def get_dataset(conn: Conn, caller: Who, note: Noted, dataset_id: Id) -> catalog.Dataset:
        found = await catalog.visible(conn, caller.enterprise_id, dataset_id)
        if found is None:
            raise ApiError(404, "not_found", Text("dataset.missing"))
        note.supplier_id, note.dataset_id, note.rows = found.enterprise_id, found.id, 1
        return found

    audit_routes(r, ctx)


class Verification(BaseModel):
    ok: bool
    rows: int = Field(description="entries checked")
    head: dict[str, Any] = Field(description="the head checked against: id and hash")
    bad_id: int | None = Field(description="the first entry that does not fit")
    problem: str = Field(description="why the chain does not verify ('' when it does)")
    anchors: list[int] = Field(description="ids of the anchors found intact")


def audit_routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: audit"]
    running: dict[tuple[tuple[int, str], ...], asyncio.Task[audit_chain.Verdict]] = {}

    @r.get("/audit", tags=tags, name="audit.read")
    async def read_audit(
        conn: Conn,
        caller: Who,
        note: Noted,
        cursor: Cursor = None,
        limit: Limit = 100,
        newest_first: bool = False,
    ) -> dict[str, Any]:
        """Audit entries where the caller's enterprise is the accessing or the supplying party
        (platform admins: all), by id; with ``newest_first`` the newest first (the console's
        audit view), each page's ``next_cursor`` going further back."""
        found = await audit.entries(
            conn, caller.enterprise_id, page_cursor(cursor), limit, newest_first
        )
        note.rows = len(found)
        nxt = str(found[-1]["id"]) if len(found) == limit else None
        return {"items": jsonable_encoder(found), "next_cursor": nxt}

    @r.get("/audit/head", tags=tags, name="audit.head")
    async def audit_head(conn: Conn, caller: Who) -> dict[str, Any]:
        """The chain's head (last id and hash) signed with the platform's Ed25519 key: an
        anchor to keep outside the platform. Anyone can check the signature with
        ``public_key``; passing the anchor to ``/audit/verify`` later proves that the chain
        still holds it."""
        assert ctx.audit_key is not None
        return await audit_chain.signed_head(conn, ctx.audit_key)

    @r.get("/audit/verify", response_model=Verification, tags=tags, name="audit.verify")
    async def verify(
        request: Request,
        caller: Who,
        note: Noted,
        anchor_id: Annotated[
            list[Annotated[int, Field(ge=1, le=2**62)]] | None, Query(max_length=20)
        ] = None,
        anchor_hash: Annotated[
            list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] | None, Query(max_length=20)
        ] = None,
    ) -> Verification:
        """Recompute the whole chain with the platform's key (ids without gaps, every link,
        the head) and check it still holds the anchors given (``anchor_id`` with
        ``anchor_hash``, in pairs). Callers asking at the same time share one run. Answered
        even when the log refuses appends (a changed head does), so its entry may be
        missing."""
        note.required = False  # a broken chain may refuse appends: say so all the same
        if len(anchor_id or []) != len(anchor_hash or []):
            raise ApiError(422, "invalid_request", Text("audit.anchors"))
        anchors = tuple(sorted(zip(anchor_id or [], anchor_hash or [], strict=True)))
        task = running.get(anchors)
        if task is None:
            task = asyncio.create_task(_verify(ctx, anchors))
            running[anchors] = task
            task.add_done_callback(lambda _: running.pop(anchors, None))
        verdict = await asyncio.shield(task)
        return Verification(
            ok=verdict.ok,
            rows=verdict.rows,
            head={"id": verdict.head_id, "hash": verdict.head_hash},
            bad_id=verdict.bad_id,
            problem=verdict.problem.worded(language_of(request)) if verdict.problem else "",
            anchors=verdict.anchors,
        )


async def _verify(ctx: Context, anchors: tuple[tuple[int, str], ...]) -> audit_chain.Verdict:
    assert ctx.audit_key is not None
    async with ctx.pool().connection() as conn:
        return await audit_chain.verify(
            conn, ctx.audit_key, [audit_chain.Anchor(i, h) for i, h in anchors]
        )


def grant_routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: grants"]

    @r.post(
        "/grants",
        response_model=grants.Grant,
        status_code=201,
        tags=tags,
        name="grant.request",
    )
    async def request_grant(
        conn: Conn, caller: Who, note: Noted, body: grants.GrantRequest
    ) -> grants.Grant:
        """Ask a supplier for a dataset (partner clients and enterprise admins). General-grade
        requests of a chain leader of the supplier are approved at once; the others wait for
        the supplier. ``expires_at`` must lie ahead, at most ``partner_grant_max_days``."""
        if caller.enterprise_id is None:
            raise ApiError(403, "role_forbidden", Text("grant.platform_admin"))
        note.dataset_id = body.dataset_id
        expires = utc(body.expires_at)
        assert expires is not None
        body = body.model_copy(
            update={
                "expires_at": expires,
                "window_start": utc(body.window_start),
                "window_end": utc(body.window_end),
            }
        )
        problem = grants.expiry_problem(
            expires, datetime.now(UTC), ctx.settings.partner_grant_max_days
        )
        if problem:
            raise ApiError(422, "invalid_request", problem)
        d = await catalog.visible(conn, caller.enterprise_id, body.dataset_id)
        if d is None:
            raise ApiError(404, "not_found", Text("dataset.missing"))
        note.supplier_id = d.enterprise_id
        if d.enterprise_id == caller.enterprise_id:
            raise ApiError(422, "invalid_request", Text("grant.own"))
        reason, detail = grants.request_refusal(d, body)
        if reason is None:
            detail = await grants.scope_error(conn, d.enterprise_id, body)
            reason = "out_of_scope" if detail else None
        if reason is not None:
            raise ApiError(403, reason, detail)
        made = await grants.create(conn, d, caller.enterprise_id, body, caller.client_id)
        await record(conn, ctx, note, 201, grant_id=made.id)
        return made

    @r.get("/grants", tags=tags, name="grant.list")
    async def list_grants(
        conn: Conn, caller: Who, note: Noted, cursor: Cursor = None, limit: Limit = 100
    ) -> dict[str, Any]:
        """Grants the caller's enterprise gives or holds, by id."""
        found = await grants.listing(conn, caller.enterprise_id, page_cursor(cursor), limit)
        note.rows = len(found)
        nxt = str(found[-1].id) if len(found) == limit else None
        return {"items": jsonable_encoder(found), "next_cursor": nxt}

    @r.get("/grants/{grant_id}", response_model=grants.Grant, tags=tags, name="grant.read")
    async def get_grant(conn: Conn, caller: Who, note: Noted, grant_id: Id) -> grants.Grant:
        found = await grants.get(conn, grant_id, caller.enterprise_id)
        if found is None:
            raise ApiError(404, "not_found", Text("grant.missing"))
        _parties(note, found)
        note.rows = 1
        return found

    @r.post("/grants/{grant_id}/{action}", response_model=grants.Grant, tags=tags, name="grant.act")
    async def act(
        conn: Conn, caller: Who, note: Noted, grant_id: Id, action: grants.Action
    ) -> grants.Grant:
        """approve / reject / revoke: the supplier's enterprise admin; activate / terminate:
        the partner enterprise's clients."""
        note.action, note.grant_id = f"grant.{action}", grant_id
        g = await grants.get(conn, grant_id, caller.enterprise_id)
        if g is None:
            raise ApiError(404, "not_found", Text("grant.missing"))
        _parties(note, g)
        if caller.enterprise_id is None:
            raise ApiError(403, "role_forbidden", Text("grant.parties"))
        side = grants.TRANSITIONS[action][0]
        mine = g.supplier_id if side == "supplier" else g.partner_id
        if mine != caller.enterprise_id or (
            side == "supplier" and caller.role != "enterprise_admin"
        ):
            raise ApiError(403, "role_forbidden", Text(f"grant.for_{side}", action=action))
        done = await grants.transition(conn, grant_id, action, caller.client_id)
        if done is None:
            raise ApiError(409, "conflict", Text("grant.state", action=action, status=g.status))
        if action in ("revoke", "terminate"):
            await webhooks.stop_for_grant(conn, grant_id, grants.inactive_reason(done.status))
        await record(conn, ctx, note, 200)
        return done


def _parties(note: Note, g: grants.Grant) -> None:
    note.supplier_id, note.partner_id = g.supplier_id, g.partner_id
    note.dataset_id, note.grant_id = g.dataset_id, g.id
