"""Chains their leaders build: a leader invites suppliers, a supplier accepts (a member from
that moment) or declines, and may leave (a member until then). Membership is kept with its
history (``chain_member_history``), so a chain's figure over a window counts exactly the
suppliers that were members throughout it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel

_INVITATION = (
    "i.id, i.chain_id, c.code AS chain, c.leader_id, i.enterprise_id, i.tier, i.status,"
    " i.invited_by, i.invited_at, i.decided_by, i.decided_at"
)


class Invitation(BaseModel):
    id: int
    chain_id: int
    chain: str
    leader_id: int
    enterprise_id: int
    tier: int
    status: str
    invited_by: str
    invited_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class MembershipRefused(ValueError):
    """A change of a chain's or a park's membership that cannot be made now (one line saying
    why); ``key`` and ``values`` name the message for the API's catalogue
    (``membership.<key>``), which words it in the request's language."""

    def __init__(self, english: str, key: str, **values: object) -> None:
        super().__init__(english)
        self.key, self.values = key, values


async def create_chain(
    conn: psycopg.AsyncConnection[Any], code: str, name: str, leader_id: int
) -> int:
    cur = await conn.execute(
        "INSERT INTO chain (code, name, leader_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (code) DO NOTHING RETURNING id",
        (code, name, leader_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise MembershipRefused(f"chain code {code!r} is taken", "chain_taken", code=code)
    return int(row[0])


async def leader_of(conn: psycopg.AsyncConnection[Any], chain_id: int) -> int | None:
    cur = await conn.execute("SELECT leader_id FROM chain WHERE id = %s", (chain_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def invite(
    conn: psycopg.AsyncConnection[Any], chain_id: int, enterprise_id: int, tier: int, by: str
) -> Invitation:
    cur = await conn.execute(
        "SELECT (SELECT leader_id FROM chain WHERE id = %(c)s),"
        " EXISTS (SELECT 1 FROM enterprise WHERE id = %(e)s),"
        " EXISTS (SELECT 1 FROM chain_member WHERE chain_id = %(c)s AND enterprise_id = %(e)s),"
        " EXISTS (SELECT 1 FROM chain_invitation WHERE chain_id = %(c)s"
        "  AND enterprise_id = %(e)s AND status = 'invited')",
        {"c": chain_id, "e": enterprise_id},
    )
    leader, exists, member, invited = await cur.fetchone() or (None, False, False, False)
    if not exists:
        raise MembershipRefused(f"no enterprise {enterprise_id}", "no_enterprise", id=enterprise_id)
    if leader == enterprise_id or member:
        raise MembershipRefused("the enterprise is in the chain already", "in_chain")
    if invited:
        raise MembershipRefused("the enterprise is invited already", "invited")
    cur = await conn.execute(
        "INSERT INTO chain_invitation (chain_id, enterprise_id, tier, invited_by)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (chain_id, enterprise_id, tier, by),
    )
    row = await cur.fetchone()
    assert row is not None
    found = await get_invitation(conn, int(row[0]))
    assert found is not None
    return found


async def get_invitation(
    conn: psycopg.AsyncConnection[Any], invitation_id: int
) -> Invitation | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_INVITATION} FROM chain_invitation i JOIN chain c ON c.id = i.chain_id"
            " WHERE i.id = %s",
            (invitation_id,),
        )
        row = await cur.fetchone()
    return Invitation(**row) if row else None


async def invitations_of(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int | None
) -> list[Invitation]:
    """Invitations to the enterprise and from the chains it leads (all for None)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_INVITATION} FROM chain_invitation i JOIN chain c ON c.id = i.chain_id"
            " WHERE %(e)s::bigint IS NULL OR i.enterprise_id = %(e)s OR c.leader_id = %(e)s"
            " ORDER BY i.id",
            {"e": enterprise_id},
        )
        return [Invitation(**row) for row in await cur.fetchall()]


async def answer(
    conn: psycopg.AsyncConnection[Any],
    invitation_id: int,
    accept: bool,
    by: str,
    at: datetime | None = None,
) -> Invitation:
    """Accept (a member from ``at``, default now) or decline an open invitation."""
    at = at or datetime.now(UTC)
    cur = await conn.execute(
        "UPDATE chain_invitation SET status = %s, decided_by = %s, decided_at = %s"
        " WHERE id = %s AND status = 'invited' RETURNING chain_id, enterprise_id, tier",
        ("accepted" if accept else "declined", by, at, invitation_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise MembershipRefused("the invitation is not open", "invitation_closed")
    if accept:
        await conn.execute(
            "INSERT INTO chain_member (chain_id, enterprise_id, tier) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            row,
        )
        await conn.execute(
            "INSERT INTO chain_member_history (chain_id, enterprise_id, tier, valid_from)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (*row, at),
        )
    found = await get_invitation(conn, invitation_id)
    assert found is not None
    return found


async def leave(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    enterprise_id: int,
    at: datetime | None = None,
) -> None:
    """End the enterprise's membership at ``at`` (default now)."""
    at = at or datetime.now(UTC)
    cur = await conn.execute(
        "DELETE FROM chain_member WHERE chain_id = %s AND enterprise_id = %s RETURNING 1",
        (chain_id, enterprise_id),
    )
    if await cur.fetchone() is None:
        raise MembershipRefused("the enterprise is not a member of the chain", "not_member")
    await conn.execute(
        "UPDATE chain_member_history SET valid_to = greatest(%s, valid_from)"
        " WHERE chain_id = %s AND enterprise_id = %s AND valid_to IS NULL",
        (at, chain_id, enterprise_id),
    )


async def members_during(
    conn: psycopg.AsyncConnection[Any], chain_id: int, start: datetime, end: datetime
) -> list[int]:
    """The leader, then the suppliers that were members throughout ``[start, end)``."""
    cur = await conn.execute(
        "SELECT leader_id FROM chain WHERE id = %(c)s UNION ALL"
        " SELECT enterprise_id FROM (SELECT DISTINCT enterprise_id FROM chain_member_history"
        "  WHERE chain_id = %(c)s AND valid_from <= %(s)s"
        "  AND (valid_to IS NULL OR valid_to >= %(e)s) ORDER BY enterprise_id) m",
        {"c": chain_id, "s": start, "e": end},
    )
    return [int(r[0]) for r in await cur.fetchall()]
