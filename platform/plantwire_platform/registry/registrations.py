"""Parks and regions that register their enterprises with consent: the group's authority asks,
the enterprise's admins accept (in the group from that moment, leaving the one of that kind it
was in) or decline. Membership is kept with its history (``park_member_history``,
``region_member_history``), so a group's figure over a window counts exactly the enterprises
that were in it throughout. An enterprise's region is its own, else its park's; its region
history is kept in step with every change of either (:func:`keep_region_history`).

One :class:`Kind` says where each kind of group keeps its requests and history; the functions
serve both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

from plantwire_platform.registry.chains import MembershipRefused

ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)
"""valid_from of a first version: the registry describes the plant as it always was."""
_REGION = "coalesce(nullif(e.region, ''), p.region, '')"
"""An enterprise's region (``e``, with its park ``p``): its own, else its park's."""


class _Asked(BaseModel):
    id: int
    enterprise_id: int
    status: str
    asked_by: str
    asked_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class Registration(_Asked):
    """A park's request to an enterprise."""

    park_id: int
    park: str


class RegionRegistration(_Asked):
    """A region's request to an enterprise."""

    region: str


R = TypeVar("R", Registration, RegionRegistration)


@dataclass(frozen=True, slots=True)
class Kind(Generic[R]):
    """Where a kind of group keeps its requests and its members' history."""

    noun: str
    key: str  # the column naming the group in both tables
    key_type: str  # its SQL type
    requests: str
    history: str
    columns: str  # a request's columns, of ``r`` (and the park ``p``)
    source: str  # the FROM of a request
    member: str  # SQL: the enterprise %(e)s is in the group %(g)s now
    model: type[R]


PARKS: Kind[Registration] = Kind(
    "park",
    "park_id",
    "bigint",
    "park_registration",
    "park_member_history",
    "r.id, r.park_id, p.code AS park, r.enterprise_id, r.status, r.asked_by, r.asked_at,"
    " r.decided_by, r.decided_at",
    "park_registration r JOIN park p ON p.id = r.park_id",
    "EXISTS (SELECT 1 FROM enterprise WHERE id = %(e)s AND park_id = %(g)s)",
    Registration,
)
REGIONS: Kind[RegionRegistration] = Kind(
    "region",
    "region",
    "text",
    "region_registration",
    "region_member_history",
    "r.id, r.region, r.enterprise_id, r.status, r.asked_by, r.asked_at, r.decided_by, r.decided_at",
    "region_registration r",
    "EXISTS (SELECT 1 FROM enterprise e LEFT JOIN park p ON p.id = e.park_id"
    f" WHERE e.id = %(e)s AND {_REGION} = %(g)s)",
    RegionRegistration,
)


async def park_exists(conn: psycopg.AsyncConnection[Any], park_id: int) -> bool:
    cur = await conn.execute("SELECT 1 FROM park WHERE id = %s", (park_id,))
    return await cur.fetchone() is not None


async def ask(
    conn: psycopg.AsyncConnection[Any], kind: Kind[R], group: int | str, enterprise_id: int,
    by: str,
) -> R:  # fmt: skip
    """Ask the enterprise into the group (it is in once its admins consent)."""
    cur = await conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM enterprise WHERE id = %(e)s), {kind.member},"
        f" EXISTS (SELECT 1 FROM {kind.requests} WHERE {kind.key} = %(g)s"
        "  AND enterprise_id = %(e)s AND status = 'asked')",
        {"g": group, "e": enterprise_id},
    )
    exists, member, asked = await cur.fetchone() or (False, False, False)
    if not exists:
        raise MembershipRefused(f"no enterprise {enterprise_id}", "no_enterprise", id=enterprise_id)
    if member:
        raise MembershipRefused(f"the enterprise is in the {kind.noun} already", f"in_{kind.noun}")
    if asked:
        raise MembershipRefused("the enterprise was asked already", "asked")
    cur = await conn.execute(
        f"INSERT INTO {kind.requests} ({kind.key}, enterprise_id, asked_by) VALUES (%s, %s, %s)"
        " RETURNING id",
        (group, enterprise_id, by),
    )
    row = await cur.fetchone()
    assert row is not None
    found = await get_registration(conn, kind, int(row[0]))
    assert found is not None
    return found


async def get_registration(
    conn: psycopg.AsyncConnection[Any], kind: Kind[R], registration_id: int
) -> R | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {kind.columns} FROM {kind.source} WHERE r.id = %s", (registration_id,)
        )
        row = await cur.fetchone()
    return kind.model(**row) if row else None


async def registrations_of(
    conn: psycopg.AsyncConnection[Any], kind: Kind[R], enterprise_id: int | None,
    group: int | str | None,
) -> list[R]:  # fmt: skip
    """Requests to the enterprise, or of the group (all when both are None)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {kind.columns} FROM {kind.source}"
            f" WHERE (%(e)s::bigint IS NULL AND %(g)s::{kind.key_type} IS NULL)"
            f" OR r.enterprise_id = %(e)s OR r.{kind.key} = %(g)s ORDER BY r.id",
            {"e": enterprise_id, "g": group},
        )
        return [kind.model(**row) for row in await cur.fetchall()]


async def answer(
    conn: psycopg.AsyncConnection[Any],
    kind: Kind[R],
    registration_id: int,
    accept: bool,
    by: str,
    at: datetime | None = None,
) -> R:
    """Consent (in the group from ``at``, default now; out of the one it was in) or decline."""
    at = at or datetime.now(UTC)
    cur = await conn.execute(
        f"UPDATE {kind.requests} SET status = %s, decided_by = %s, decided_at = %s"
        f" WHERE id = %s AND status = 'asked' RETURNING {kind.key}, enterprise_id",
        ("accepted" if accept else "declined", by, at, registration_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise MembershipRefused("the registration is not open", "registration_closed")
    group, enterprise_id = row
    if accept:
        if kind is PARKS:  # (a region's history follows the enterprise's region, below)
            await conn.execute(
                "UPDATE park_member_history SET valid_to = greatest(%s, valid_from)"
                " WHERE enterprise_id = %s AND valid_to IS NULL",
                (at, enterprise_id),
            )
            await conn.execute(
                "INSERT INTO park_member_history (park_id, enterprise_id, valid_from)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (group, enterprise_id, at),
            )
        await conn.execute(
            f"UPDATE enterprise SET {kind.key} = %s WHERE id = %s", (group, enterprise_id)
        )
        # (in a park without a region of its own: in its park's region from now on)
        await keep_region_history(conn, enterprise_id, at, at)
    found = await get_registration(conn, kind, registration_id)
    assert found is not None
    return found


async def members_during(
    conn: psycopg.AsyncConnection[Any], kind: Kind[Any], group: int | str, start: datetime,
    end: datetime,
) -> list[int]:  # fmt: skip
    """The enterprises that were in the group throughout ``[start, end)``."""
    cur = await conn.execute(
        f"SELECT DISTINCT enterprise_id FROM {kind.history} WHERE {kind.key} = %s"
        " AND valid_from <= %s AND (valid_to IS NULL OR valid_to >= %s) ORDER BY enterprise_id",
        (group, start, end),
    )
    return [int(r[0]) for r in await cur.fetchall()]


async def keep_region_history(
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
