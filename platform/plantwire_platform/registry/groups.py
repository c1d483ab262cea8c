"""Groups of enterprises: industrial chains ("lines"), parks ("fields") and regions, and
who belongs to each. How an indicator rolls up over them:
:mod:`plantwire_platform.indicators.rollup`.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

GroupKind = Literal["chains", "parks", "regions"]


def _number(key: str) -> int | None:
    """A chain's or park's id, if ``key`` spells one (ASCII digits only: ``str.isdigit`` also
    takes '¹', which ``int`` refuses)."""
    return int(key) if key.isascii() and key.isdigit() else None


async def members(conn: psycopg.AsyncConnection[Any], kind: GroupKind, key: str) -> list[int]:
    """Enterprise ids of a chain (leader first, then suppliers), a park, or a region."""
    if kind != "regions" and _number(key) is None:
        return []
    if kind == "chains":
        cur = await conn.execute(
            "SELECT leader_id FROM chain WHERE id = %s UNION ALL"
            " SELECT m.enterprise_id FROM chain_member m WHERE m.chain_id = %s",
            (int(key), int(key)),
        )
    elif kind == "parks":
        cur = await conn.execute(
            "SELECT id FROM enterprise WHERE park_id = %s ORDER BY id", (int(key),)
        )
    else:
        cur = await conn.execute(
            "SELECT e.id FROM enterprise e LEFT JOIN park p ON p.id = e.park_id"
            " WHERE coalesce(nullif(e.region, ''), p.region) = %s ORDER BY e.id",
            (key,),
        )
    return [int(r[0]) for r in await cur.fetchall()]


async def describe(
    conn: psycopg.AsyncConnection[Any], kind: GroupKind, key: str
) -> dict[str, Any] | None:
    """The group's own record, or None if it does not exist (a region exists once an
    enterprise is or was in it, was asked into it, or an authority is bound to it)."""
    if kind != "regions" and _number(key) is None:
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        if kind == "chains":
            await cur.execute(
                "SELECT c.id, c.code, c.name, e.id AS leader_id, e.name AS leader"
                " FROM chain c JOIN enterprise e ON e.id = c.leader_id WHERE c.id = %s",
                (int(key),),
            )
        elif kind == "parks":
            await cur.execute("SELECT id, code, name, region FROM park WHERE id = %s", (int(key),))
        else:
            await cur.execute(
                "SELECT %s::text AS id, %s::text AS code, %s::text AS name WHERE EXISTS"
                " (SELECT 1 FROM known_region WHERE region = %s)",
                (key, key, key, key),
            )
        return await cur.fetchone()


async def listing(conn: psycopg.AsyncConnection[Any], kind: GroupKind) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        if kind == "chains":
            await cur.execute(
                "SELECT c.id, c.code, c.name, c.leader_id,"
                " (SELECT count(*) FROM chain_member m WHERE m.chain_id = c.id) AS suppliers"
                " FROM chain c ORDER BY c.id"
            )
        elif kind == "parks":
            await cur.execute(
                "SELECT p.id, p.code, p.name, p.region,"
                " (SELECT count(*) FROM enterprise e WHERE e.park_id = p.id) AS enterprises"
                " FROM park p ORDER BY p.id"
            )
        else:
            await cur.execute(
                "SELECT r.region AS id, (SELECT count(*) FROM enterprise e"
                "  LEFT JOIN park p ON p.id = e.park_id"
                "  WHERE coalesce(nullif(e.region, ''), p.region) = r.region) AS enterprises"
                " FROM known_region r WHERE r.region <> '' ORDER BY 1"
            )
        return await cur.fetchall()
