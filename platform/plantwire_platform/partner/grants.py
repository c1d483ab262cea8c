"""Grants from a supplier to a partner enterprise: the rules, the lifecycle, the access decision.

Lifecycle: requested -> approved -> active -> expired | revoked | terminated (and requested ->
rejected). General-grade requests of a leader of one of the supplier's chains are approved on
request; every other request waits for the supplier's explicit approval; core data is never
granted; raw granularity only for general-grade datasets; the expiry lies ahead, at most a
configured number of days. 'expired' is derived from ``expires_at`` at read time, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from psycopg import AsyncConnection
from pydantic import BaseModel, Field

from plantwire_platform.partner.catalog import Dataset, Granularity
from plantwire_platform.translation import Text

DbId = Annotated[int, Field(ge=1, le=2**62)]
Reason = Literal[
    "no_grant", "wrong_purpose", "expired", "revoked", "out_of_scope", "grade_forbidden"
]
Action = Literal["approve", "reject", "activate", "revoke", "terminate"]

# action -> (side allowed to take it, statuses it applies to, new status)
TRANSITIONS: dict[Action, tuple[str, tuple[str, ...], str]] = {
    "approve": ("supplier", ("requested",), "approved"),
    "reject": ("supplier", ("requested",), "rejected"),
    "activate": ("partner", ("approved",), "active"),
    "revoke": ("supplier", ("requested", "approved", "active"), "revoked"),
    "terminate": ("partner", ("approved", "active"), "terminated"),
}


class GrantRequest(BaseModel):
    """What a partner asks a supplier for."""

    dataset_id: int = Field(ge=1, le=2**62)
    purpose: str = Field(min_length=1, max_length=64)
    site_ids: list[DbId] | None = Field(default=None, max_length=100)
    equipment_ids: list[DbId] | None = Field(default=None, max_length=1000)
    fields: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=100
    )
    window_start: datetime | None = None
    window_end: datetime | None = None
    granularity: Granularity = "aggregated"
    expires_at: datetime


class Grant(BaseModel):
    id: int
    dataset_id: int
    supplier_id: int
    partner_id: int
    purpose: str
    site_ids: list[int] | None
    equipment_ids: list[int] | None
    fields: list[str] | None
    window_start: datetime | None
    window_end: datetime | None
    granularity: Granularity
    status: str = Field(
        description="requested, approved, active, expired, rejected, revoked or terminated"
    )
    expires_at: datetime
    supplier_name: str = Field(description="the supplier enterprise's name")
    partner_name: str = Field(description="the partner enterprise's name")


def request_refusal(d: Dataset, r: GrantRequest) -> tuple[Reason | None, Text | None]:
    """Why a grant request breaks the rules (reason code, detail), or (None, None)."""
    if d.grade == "core":
        return "grade_forbidden", Text("grant.core")
    if r.granularity == "raw" and d.grade != "general":
        return "grade_forbidden", Text("grant.raw_grade")
    if r.granularity == "raw" and d.granularity != "raw":
        return "out_of_scope", Text("grant.aggregated")
    if r.purpose not in d.purposes:
        return "wrong_purpose", Text("grant.purposes", purposes=", ".join(d.purposes))
    if d.kind == "indicators" and (r.site_ids or r.equipment_ids or r.fields):
        return "out_of_scope", Text("grant.enterprise_wide")
    if r.window_start and r.window_end and r.window_start >= r.window_end:
        return "out_of_scope", Text("grant.window")
    return None, None


def expiry_problem(expires_at: datetime, now: datetime, max_days: int) -> Text | None:
    """Why a requested expiry cannot be granted (None if it can): it must lie ahead, at most
    ``max_days`` days."""
    if expires_at <= now:
        return Text("grant.expiry_past")
    if expires_at - now > timedelta(days=max_days):
        return Text("grant.expiry_far", days=max_days)
    return None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A grant of the dataset to the caller's enterprise, as the access decision sees it."""

    id: int
    purpose: str
    status: str
    expired: bool


def decide(candidates: list[Candidate], purpose: str) -> tuple[int | None, Reason | None]:
    """The grant that allows access for ``purpose``, or the reason none does.

    Candidates come newest first. An unexpired active grant for the purpose wins; otherwise the
    newest grant for the purpose names the reason (revoked, expired, else no grant).
    """
    if not candidates:
        return None, "no_grant"
    matching = [c for c in candidates if c.purpose == purpose]
    if not matching:
        return None, "wrong_purpose"
    for c in matching:
        if c.status == "active" and not c.expired:
            return c.id, None
    newest = matching[0]
    if newest.status == "revoked":
        return None, "revoked"
    if newest.expired:
        return None, "expired"
    return None, "no_grant"


def inactive_reason(status: str) -> Reason:
    """The reason code of a call through a grant that is not active (in ``status``)."""
    return "revoked" if status == "revoked" else "expired" if status == "expired" else "no_grant"


def effective_status(alias: str = "") -> str:
    """SQL: the status of grant row ``alias``, 'expired' for an approved or active grant past
    its ``expires_at`` (never stored)."""
    g = f"{alias}." if alias else ""
    return (
        f"CASE WHEN {g}status IN ('approved', 'active') AND {g}expires_at <= now()"
        f" THEN 'expired' ELSE {g}status END"
    )


_GRANT_COLUMNS = (
    "id, dataset_id, supplier_id, partner_id, purpose, site_ids, equipment_ids, fields,"
    f" window_start, window_end, granularity, {effective_status()}, expires_at,"
    " (SELECT x.name FROM enterprise x WHERE x.id = partner_grant.supplier_id),"
    " (SELECT x.name FROM enterprise x WHERE x.id = partner_grant.partner_id)"
)


def _grant(row: tuple[Any, ...]) -> Grant:
    return Grant(**dict(zip(Grant.model_fields, row, strict=True)))


async def scope_error(conn: AsyncConnection[Any], supplier_id: int, r: GrantRequest) -> Text | None:
    """Sites or equipment named in a request that are not the supplier's (None if none)."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM site WHERE id = ANY(%(sites)s) AND enterprise_id = %(s)s),"
        " (SELECT count(*) FROM equipment e JOIN site s ON s.id = e.site_id"
        "  WHERE e.id = ANY(%(eq)s) AND s.enterprise_id = %(s)s)",
        {"sites": r.site_ids or [], "eq": r.equipment_ids or [], "s": supplier_id},
    )
    row = await cur.fetchone()
    assert row is not None
    if row[0] != len(set(r.site_ids or [])):
        return Text("grant.foreign_site")
    if row[1] != len(set(r.equipment_ids or [])):
        return Text("grant.foreign_equipment")
    return None


async def create(
    conn: AsyncConnection[Any], d: Dataset, partner_id: int, r: GrantRequest, client_id: str
) -> Grant:
    """Record a request (uncommitted). A general-grade dataset's request by a leader of one of
    the supplier's chains is approved at once; others wait for the supplier."""
    cur = await conn.execute(
        "WITH auto AS (SELECT %(general)s AND EXISTS (SELECT 1 FROM chain c"
        "  JOIN chain_member m ON m.chain_id = c.id"
        "  WHERE c.leader_id = %(partner)s AND m.enterprise_id = %(supplier)s) AS yes)"
        " INSERT INTO partner_grant (dataset_id, supplier_id, partner_id, purpose, site_ids,"
        " equipment_ids, fields, window_start, window_end, granularity, status, expires_at,"
        " requested_by, decided_by, decided_at)"
        " SELECT %(dataset)s, %(supplier)s, %(partner)s, %(purpose)s, %(sites)s, %(equipment)s,"
        " %(fields)s, %(start)s, %(end)s, %(granularity)s,"
        " CASE WHEN yes THEN 'approved' ELSE 'requested' END, %(expires)s, %(by)s,"
        " CASE WHEN yes THEN 'auto' END, CASE WHEN yes THEN now() END FROM auto"
        f" RETURNING {_GRANT_COLUMNS}",
        {
            "general": d.grade == "general",
            "dataset": d.id,
            "supplier": d.enterprise_id,
            "partner": partner_id,
            "purpose": r.purpose,
            "sites": r.site_ids,
            "equipment": r.equipment_ids,
            "fields": r.fields,
            "start": r.window_start,
            "end": r.window_end,
            "granularity": r.granularity,
            "expires": r.expires_at,
            "by": client_id,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return _grant(row)


async def get(conn: AsyncConnection[Any], grant_id: int, enterprise_id: int | None) -> Grant | None:
    """A grant the enterprise is a party to (any grant for ``None``)."""
    cur = await conn.execute(
        f"SELECT {_GRANT_COLUMNS} FROM partner_grant WHERE id = %(id)s"
        " AND (%(ent)s::bigint IS NULL OR supplier_id = %(ent)s OR partner_id = %(ent)s)",
        {"id": grant_id, "ent": enterprise_id},
    )
    row = await cur.fetchone()
    return _grant(row) if row else None


async def listing(
    conn: AsyncConnection[Any], enterprise_id: int | None, after: int, limit: int
) -> list[Grant]:
    cur = await conn.execute(
        f"SELECT {_GRANT_COLUMNS} FROM partner_grant WHERE id > %(after)s"
        " AND (%(ent)s::bigint IS NULL OR supplier_id = %(ent)s OR partner_id = %(ent)s)"
        " ORDER BY id LIMIT %(limit)s",
        {"after": after, "ent": enterprise_id, "limit": limit},
    )
    return [_grant(r) for r in await cur.fetchall()]


async def transition(
    conn: AsyncConnection[Any], grant_id: int, action: Action, client_id: str
) -> Grant | None:
    """Apply a lifecycle action if the grant is in a state it applies to (None otherwise);
    approving or activating an expired grant does nothing. Uncommitted: the API commits it
    together with its audit row."""
    _, sources, target = TRANSITIONS[action]
    stamp = {
        "approve": "decided_by = %(by)s, decided_at = now()",
        "reject": "decided_by = %(by)s, decided_at = now()",
        "activate": "activated_at = now()",
        "revoke": "decided_by = %(by)s, ended_at = now()",
        "terminate": "ended_at = now()",
    }[action]
    live = " AND expires_at > now()" if action in ("approve", "activate") else ""
    cur = await conn.execute(
        f"UPDATE partner_grant SET status = %(to)s, {stamp} WHERE id = %(id)s"
        f" AND status = ANY(%(from)s){live} RETURNING {_GRANT_COLUMNS}",
        {"to": target, "id": grant_id, "from": list(sources), "by": client_id},
    )
    row = await cur.fetchone()
    return _grant(row) if row else None
