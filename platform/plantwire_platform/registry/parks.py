"""Parks that register their enterprises with consent: a park's authority asks, the enterprise's
admins accept (in the park from that moment, leaving the park it was in) or decline. Membership
is kept with its history (``park_member_history``), so a park's figure over a window counts
exactly the enterprises that were in it throughout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from plantwire_platform.registry import regions
from plantwire_platform.registry.chains import MembershipRefused

_REGISTRATION = (
    "r.id, r.park_id, p.code AS park, r.enterprise_id, r.status, r.asked_by, r.asked_at,"
    " r.decided_by, r.decided_at"
)


class Registration(BaseModel):
    id: int
    park_id: int
    park: str
    enterprise_id: int
    status: str
    asked_by: str
    asked_at: datetime
    decided_by: str | None
    decided_at: datetime | None


async def park_exists(conn: psycopg.AsyncConnection[Any], park_id: int) -> bool:
    cur = await conn.execute("SELECT 1 FROM park WHERE id = %s", (park_id,))
    return await cur.fetchone() is not None


async def ask(
    conn: psycopg.AsyncConnection[Any], park_id: int, enterprise_id: int, by: str
) -> Registration:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM enterprise WHERE id = %(e)s),"
        " EXISTS (SELECT 1 FROM enterprise WHERE id = %(e)s AND park_id = %(p)s),"
        " EXISTS (SELECT 1 FROM park_registration WHERE park_id = %(p)s"
        "  AND enterprise_id = %(e)s AND status = 'asked')",
        {"p": park_id, "e": enterprise_id},
    )
    exists, member, asked = await cur.fetchone() or (False, False, False)
    if not exists:
        raise MembershipRefused(f"no enterprise {enterprise_id}")
    if member:
        raise MembershipRefused("the enterprise is in the park already")
    if asked:
        raise MembershipRefused("the enterprise was asked already")
    cur = await conn.execute(
        "INSERT INTO park_registration (park_id, enterprise_id, asked_by) VALUES (%s, %s, %s)"
        " RETURNING id",
        (park_id, enterprise_id, by),
    )
    row = await cur.fetchone()
    assert row is not None
    found = await get_registration(conn, int(row[0]))
    assert found is not None
    return found


async def get_registration(
    conn: psycopg.AsyncConnection[Any], registration_id: int
) -> Registration | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_REGISTRATION} FROM park_registration r JOIN park p ON p.id = r.park_id"
            " WHERE r.id = %s",
            (registration_id,),
        )
        row = await cur.fetchone()
    return Registration(**row) if row else None


async def registrations_of(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int | None, park_id: int | None
) -> list[Registration]:
    """Registrations of the enterprise, or of the park (all when both are None)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_REGISTRATION} FROM park_registration r JOIN park p ON p.id = r.park_id"
            " WHERE (%(e)s::bigint IS NULL AND %(p)s::bigint IS NULL)"
            " OR r.enterprise_id = %(e)s OR r.park_id = %(p)s ORDER BY r.id",
            {"e": enterprise_id, "p": park_id},
        )
        return [Registration(**row) for row in await cur.fetchall()]


async def answer(
    conn: psycopg.AsyncConnection[Any],
    registration_id: int,
    accept: bool,
    by: str,
    at: datetime | None = None,
) -> Registration:
    """Consent (in the park from ``at``, default now; out of the park it was in) or decline."""
    at = at or datetime.now(UTC)
    cur = await conn.execute(
        "UPDATE park_registration SET status = %s, decided_by = %s, decided_at = %s"
        " WHERE id = %s AND status = 'asked' RETURNING park_id, enterprise_id",
        ("accepted" if accept else "declined", by, at, registration_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise MembershipRefused("the registration is not open")
    park_id, enterprise_id = row
    if accept:
        await conn.execute(
            "UPDATE park_member_history SET valid_to = greatest(%s, valid_from)"
            " WHERE enterprise_id = %s AND valid_to IS NULL",
            (at, enterprise_id),
        )
        await conn.execute(
            "INSERT INTO park_member_history (park_id, enterprise_id, valid_from)"
            " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (park_id, enterprise_id, at),
        )
        await conn.execute(
            "UPDATE enterprise SET park_id = %s WHERE id = %s", (park_id, enterprise_id)
        )
        # without a region of its own, it is in its park's region from now on
        await regions.keep_history(conn, enterprise_id, at, at)
    found = await get_registration(conn, registration_id)
    assert found is not None
    return found


async def members_during(
    conn: psycopg.AsyncConnection[Any], park_id: int, start: datetime, end: datetime
) -> list[int]:
    """The enterprises that were in the park throughout ``[start, end)``."""
    cur = await conn.execute(
        "SELECT DISTINCT enterprise_id FROM park_member_history WHERE park_id = %s"
        " AND valid_from <= %s AND (valid_to IS NULL OR valid_to >= %s) ORDER BY enterprise_id",
        (park_id, start, end),
    )
    return [int(r[0]) for r in await cur.fetchall()]
