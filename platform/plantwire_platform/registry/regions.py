"""Regions that register their enterprises with consent, as parks do
(:mod:`plantwire_platform.registry.parks`): a region's authority asks, the enterprise's admins
accept (in the region from that moment, leaving the region it was in) or decline. An
enterprise's region is its own, else its park's; its history (``region_member_history``) is
kept in step with every change, so a region's figure over a window counts exactly the
enterprises that were in it throughout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from plantwire_platform.registry.chains import MembershipRefused

ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)
_REGION = "coalesce(nullif(e.region, ''), p.region, '')"
_REGISTRATION = "id, region, enterprise_id, status, asked_by, asked_at, decided_by, decided_at"


class RegionRegistration(BaseModel):
    id: int
    region: str
    enterprise_id: int
    status: str
    asked_by: str
    asked_at: datetime
    decided_by: str | None
    decided_at: datetime | None


async def keep_history(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int, at: datetime, first: datetime = ALWAYS
) -> None:
    """Keep the enterprise's region history in step with its region now: a region it left ends
    at ``at``; one it joined starts at ``at``, or at ``first`` if it never was in one before
    (an imported registry describes the plant as it always was; a consent counts from then)."""
    now = (
        f"(SELECT {_REGION} FROM enterprise e LEFT JOIN park p ON p.id = e.park_id"
        " WHERE e.id = %(e)s)"
    )
    await conn.execute(
        "UPDATE region_member_history SET valid_to = greatest(%(at)s, valid_from)"
        f" WHERE enterprise_id = %(e)s AND valid_to IS NULL AND region <> {now}",
        {"at": at, "e": enterprise_id},
    )
    await conn.execute(
        "INSERT INTO region_member_history (region, enterprise_id, valid_from)"
        f" SELECT {now}, %(e)s, CASE WHEN EXISTS (SELECT 1 FROM region_member_history o"
        "  WHERE o.enterprise_id = %(e)s) THEN %(at)s ELSE %(always)s END"
        f" WHERE {now} <> '' AND NOT EXISTS (SELECT 1 FROM region_member_history h"
        f"  WHERE h.enterprise_id = %(e)s AND h.region = {now} AND h.valid_to IS NULL)"
        " ON CONFLICT DO NOTHING",
        {"at": at, "always": first, "e": enterprise_id},
    )


async def ask(
    conn: psycopg.AsyncConnection[Any], region: str, enterprise_id: int, by: str
) -> RegionRegistration:
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM enterprise WHERE id = %(e)s),"
        f" EXISTS (SELECT 1 FROM enterprise e LEFT JOIN park p ON p.id = e.park_id"
        f"  WHERE e.id = %(e)s AND {_REGION} = %(r)s),"
        " EXISTS (SELECT 1 FROM region_registration WHERE region = %(r)s"
        "  AND enterprise_id = %(e)s AND status = 'asked')",
        {"r": region, "e": enterprise_id},
    )
    exists, member, asked = await cur.fetchone() or (False, False, False)
    if not exists:
        raise MembershipRefused(f"no enterprise {enterprise_id}")
    if member:
        raise MembershipRefused("the enterprise is in the region already")
    if asked:
        raise MembershipRefused("the enterprise was asked already")
    cur = await conn.execute(
        "INSERT INTO region_registration (region, enterprise_id, asked_by) VALUES (%s, %s, %s)"
        " RETURNING id",
        (region, enterprise_id, by),
    )
    row = await cur.fetchone()
    assert row is not None
    found = await get_registration(conn, int(row[0]))
    assert found is not None
    return found


async def get_registration(
    conn: psycopg.AsyncConnection[Any], registration_id: int
) -> RegionRegistration | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_REGISTRATION} FROM region_registration WHERE id = %s", (registration_id,)
        )
        row = await cur.fetchone()
    return RegionRegistration(**row) if row else None


async def registrations_of(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int | None, region: str | None
) -> list[RegionRegistration]:
    """Registrations of the enterprise, or of the region (all when both are None)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_REGISTRATION} FROM region_registration"
            " WHERE (%(e)s::bigint IS NULL AND %(r)s::text IS NULL)"
            " OR enterprise_id = %(e)s OR region = %(r)s ORDER BY id",
            {"e": enterprise_id, "r": region},
        )
        return [RegionRegistration(**row) for row in await cur.fetchall()]


async def answer(
    conn: psycopg.AsyncConnection[Any],
    registration_id: int,
    accept: bool,
    by: str,
    at: datetime | None = None,
) -> RegionRegistration:
    """Consent (in the region from ``at``, default now; out of the one it was in) or decline."""
    at = at or datetime.now(UTC)
    cur = await conn.execute(
        "UPDATE region_registration SET status = %s, decided_by = %s, decided_at = %s"
        " WHERE id = %s AND status = 'asked' RETURNING region, enterprise_id",
        ("accepted" if accept else "declined", by, at, registration_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise MembershipRefused("the registration is not open")
    region, enterprise_id = row
    if accept:
        await conn.execute(
            "UPDATE enterprise SET region = %s WHERE id = %s", (region, enterprise_id)
        )
        await keep_history(conn, enterprise_id, at, at)
    found = await get_registration(conn, registration_id)
    assert found is not None
    return found


async def members_during(
    conn: psycopg.AsyncConnection[Any], region: str, start: datetime, end: datetime
) -> list[int]:
    """The enterprises that were in the region throughout ``[start, end)``."""
    cur = await conn.execute(
        "SELECT DISTINCT enterprise_id FROM region_member_history WHERE region = %s"
        " AND valid_from <= %s AND (valid_to IS NULL OR valid_to >= %s) ORDER BY enterprise_id",
        (region, start, end),
    )
    return [int(r[0]) for r in await cur.fetchall()]
