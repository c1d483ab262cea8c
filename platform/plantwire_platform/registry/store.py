"""Writing a registry document into the database, keeping the history of the facts the
indicators depend on (a changed fact applies from a given time; past windows keep theirs)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from plantwire_platform.registry.document import Enterprise, Line, Registry
from plantwire_platform.registry.registrations import keep_region_history
from plantwire_platform.translation import Text

ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)
"""valid_from of the first entries of an enterprise (its first description: equipment, process
steps): the registry describes the plant as it always was, unless the document says since when
(``since``). An entry added to an enterprise already described starts when it is added (the
change's effective time): windows before a registry entry existed do not count it
(``docs/indicators.md``)."""


class RegistryConflict(ValueError):
    """A document that contradicts what is registered beside it (an edge node another site of
    its enterprise has, a unified social credit code another enterprise has): ``text`` names
    the document's field and the entry registered; ``str()`` is its English."""

    def __init__(self, text: Text) -> None:
        super().__init__(str(text))
        self.text = text


async def import_registry(
    conn: psycopg.AsyncConnection[Any], registry: Registry, effective: datetime | None = None
) -> dict[str, int]:
    """Create or update every entry the document names; returns enterprise ids by code.

    Idempotent: importing the same document twice changes nothing. A changed fact an indicator
    depends on (control type, declared NC, key process, which equipment performs a process) is
    versioned: the old version ends and the new one starts at ``effective`` (default: now).
    """
    at = effective or datetime.now(UTC)
    ids: dict[str, int] = {}
    async with conn.transaction():
        park_ids = {}
        for park in registry.parks:
            park_ids[park.code] = await _upsert(
                conn,
                "INSERT INTO park (code, name, region) VALUES (%s, %s, %s)"
                " ON CONFLICT (code) DO UPDATE SET name = excluded.name, region = excluded.region"
                " RETURNING id",
                (park.code, park.name, park.region),
            )
        for n, ent in enumerate(registry.enterprises):
            await _refuse_conflicts(conn, ent, f"enterprises[{n}].")
            ids[ent.code] = await _import_enterprise(conn, ent, park_ids.get(ent.park or ""), at)
            await _park_history(conn, ids[ent.code], at)
        for chain in registry.chains:
            chain_id = await _upsert(
                conn,
                "INSERT INTO chain (code, name, leader_id) VALUES (%s, %s, %s)"
                " ON CONFLICT (code) DO UPDATE SET name = excluded.name,"
                " leader_id = excluded.leader_id RETURNING id",
                (chain.code, chain.name, ids[chain.leader]),
            )
            await conn.execute("DELETE FROM chain_member WHERE chain_id = %s", (chain_id,))
            for member in chain.members:
                await conn.execute(
                    "INSERT INTO chain_member (chain_id, enterprise_id, tier) VALUES (%s, %s, %s)",
                    (chain_id, ids[member.enterprise], member.tier),
                )
            await _membership_history(conn, chain_id, at)
    return ids


async def import_enterprise(
    conn: psycopg.AsyncConnection[Any], ent: Enterprise, effective: datetime | None = None
) -> int:
    """Create or update one enterprise as :func:`import_registry` does, keeping the park it is
    in (``ent.park`` is not read: park membership is the park's and the enterprise's to
    agree); returns its id. In the connection's open transaction, uncommitted. Raises
    :class:`RegistryConflict` before writing anything when ``ent`` contradicts what is
    registered beside it."""
    await _refuse_conflicts(conn, ent, "")
    cur = await conn.execute("SELECT park_id FROM enterprise WHERE code = %s", (ent.code,))
    row = await cur.fetchone()
    return await _import_enterprise(conn, ent, row[0] if row else None, effective or _now())


def _now() -> datetime:
    return datetime.now(UTC)


async def _refuse_conflicts(
    conn: psycopg.AsyncConnection[Any], ent: Enterprise, place: str
) -> None:
    """Refuse ``ent`` (at ``place`` in its document) when one of its sites names the edge node
    of a site of the enterprise that it leaves as it is (one gateway reads one site: the ingest
    would give that gateway's machines to two sites), or its unified social credit code is
    another enterprise's. The document's own entries are checked by its model."""
    cur = await conn.execute(
        "SELECT x.code FROM enterprise x WHERE x.uscc = %s AND x.code <> %s", (ent.uscc, ent.code)
    )
    other = await cur.fetchone()
    if other is not None:
        raise RegistryConflict(
            Text("registry.uscc_taken", value=ent.uscc, enterprise=other[0], at=f"{place}uscc")
        )
    nodes = [s.edge_node for s in ent.sites]
    cur = await conn.execute(
        "SELECT s.edge_node_id, s.code FROM site s JOIN enterprise x ON x.id = s.enterprise_id"
        " WHERE x.code = %s AND s.edge_node_id = ANY(%s) AND s.code <> ALL(%s)"
        " ORDER BY s.code LIMIT 1",
        (ent.code, nodes, [s.code for s in ent.sites]),
    )
    taken = await cur.fetchone()
    if taken is not None:
        node, site = taken
        raise RegistryConflict(
            Text(
                "registry.edge_node_taken",
                value=node,
                site=site,
                at=f"{place}sites[{nodes.index(node)}].edge_node",
            )
        )


async def _import_enterprise(
    conn: psycopg.AsyncConnection[Any], ent: Enterprise, park_id: int | None, at: datetime
) -> int:
    cur = await conn.execute(
        "SELECT 1 FROM enterprise x JOIN site s ON s.enterprise_id = x.id"
        " JOIN equipment e ON e.site_id = s.id WHERE x.code = %(c)s UNION ALL"
        " SELECT 1 FROM enterprise x JOIN site s ON s.enterprise_id = x.id"
        " JOIN line l ON l.site_id = s.id JOIN process_step p ON p.line_id = l.id"
        " WHERE x.code = %(c)s LIMIT 1",
        {"c": ent.code},
    )
    described = await cur.fetchone() is not None  # it has entries: a new one starts at ``at``
    first = at if described else (ent.since or ALWAYS)
    ent_id = await _upsert(
        conn,
        "INSERT INTO enterprise (code, uscc, name, region, park_id) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (code) DO UPDATE SET uscc = excluded.uscc, name = excluded.name,"
        " region = excluded.region, park_id = excluded.park_id RETURNING id",
        (ent.code, ent.uscc, ent.name, ent.region, park_id),
    )
    await keep_region_history(conn, ent_id, at)
    for site in ent.sites:
        site_id = await _upsert(
            conn,
            "INSERT INTO site (enterprise_id, code, name, timezone, edge_node_id, shifts, workdays)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (enterprise_id, code) DO UPDATE"
            " SET name = excluded.name, timezone = excluded.timezone,"
            " edge_node_id = excluded.edge_node_id, shifts = excluded.shifts,"
            " workdays = excluded.workdays RETURNING id",
            (
                ent_id,
                site.code,
                site.name,
                site.timezone,
                site.edge_node,
                site.shifts,
                list(site.workdays),
            ),
        )
        line_ids = {}
        for line in site.lines:
            line_ids[line.code] = await _upsert(
                conn,
                "INSERT INTO line (site_id, code, name, shifts, workdays)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (site_id, code) DO UPDATE"
                " SET name = excluded.name, shifts = excluded.shifts,"
                " workdays = excluded.workdays RETURNING id",
                (
                    site_id,
                    line.code,
                    line.name,
                    line.shifts,
                    None if line.workdays is None else list(line.workdays),
                ),
            )
            await _keep_maintenance(conn, line_ids[line.code], line)
        equipment_ids = {}
        for m in site.equipment:
            eid = await _upsert(
                conn,
                "INSERT INTO equipment (site_id, line_id, code, name, control_type, declared_nc,"
                " ideal_cycle_s) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (site_id, code) DO UPDATE SET line_id = excluded.line_id,"
                " name = excluded.name, control_type = excluded.control_type,"
                " declared_nc = excluded.declared_nc, ideal_cycle_s = excluded.ideal_cycle_s"
                " RETURNING id",
                (
                    site_id,
                    line_ids[m.line],
                    m.code,
                    m.name,
                    m.control_type.value,
                    m.declared_nc,
                    m.ideal_cycle_s,
                ),
            )
            equipment_ids[m.code] = eid
            await _version(
                conn,
                "equipment_history",
                "equipment_id",
                eid,
                at,
                {"control_type": m.control_type.value, "declared_nc": m.declared_nc},
                first,
            )
        for line in site.lines:
            for p in line.processes:
                step_id = await _upsert(
                    conn,
                    "INSERT INTO process_step (line_id, code, name, is_key, key_reason)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (line_id, code) DO UPDATE"
                    " SET name = excluded.name, is_key = excluded.is_key,"
                    " key_reason = excluded.key_reason RETURNING id",
                    (line_ids[line.code], p.code, p.name, p.is_key, p.key_reason),
                )
                performers = sorted(equipment_ids[code] for code in p.equipment)
                await conn.execute(
                    "DELETE FROM process_equipment WHERE process_step_id = %s", (step_id,)
                )
                for eid in performers:
                    await conn.execute(
                        "INSERT INTO process_equipment VALUES (%s, %s)", (step_id, eid)
                    )
                await _version(
                    conn,
                    "process_history",
                    "process_step_id",
                    step_id,
                    at,
                    {"is_key": p.is_key, "key_reason": p.key_reason, "equipment_ids": performers},
                    first,
                )
    await conn.execute(
        "UPDATE series s SET equipment_id = e.id FROM equipment e"
        " JOIN site ON site.id = e.site_id"
        " WHERE site.enterprise_id = %s AND s.group_id = %s AND s.device_id = e.code"
        " AND s.edge_node_id = site.edge_node_id AND s.equipment_id IS NULL",
        (ent_id, ent.code),
    )
    return ent_id


async def _park_history(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int, at: datetime
) -> None:
    """Keep the enterprise's park history in step with its park now: a park it left ends at
    ``at``; one it joined starts at ``at``, or "always" if it never was in a park before."""
    await conn.execute(
        "UPDATE park_member_history h SET valid_to = greatest(%(at)s, h.valid_from)"
        " FROM enterprise e WHERE e.id = %(e)s AND h.enterprise_id = e.id"
        " AND h.valid_to IS NULL AND h.park_id IS DISTINCT FROM e.park_id",
        {"at": at, "e": enterprise_id},
    )
    await conn.execute(
        "INSERT INTO park_member_history (park_id, enterprise_id, valid_from)"
        " SELECT e.park_id, e.id, CASE WHEN EXISTS (SELECT 1 FROM park_member_history o"
        "  WHERE o.enterprise_id = e.id) THEN %(at)s ELSE %(always)s END"
        " FROM enterprise e WHERE e.id = %(e)s AND e.park_id IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM park_member_history h WHERE h.enterprise_id = e.id"
        "  AND h.park_id = e.park_id AND h.valid_to IS NULL)"
        " ON CONFLICT DO NOTHING",
        {"at": at, "always": ALWAYS, "e": enterprise_id},
    )


async def _membership_history(
    conn: psycopg.AsyncConnection[Any], chain_id: int, at: datetime
) -> None:
    """Keep the chain's membership history in step with its members now: a member that left
    ends at ``at``; one that joined starts at ``at``, or "always" if it never was a member."""
    await conn.execute(
        "UPDATE chain_member_history h SET valid_to = greatest(%(at)s, h.valid_from)"
        " WHERE h.chain_id = %(chain)s AND h.valid_to IS NULL AND NOT EXISTS"
        " (SELECT 1 FROM chain_member m WHERE m.chain_id = h.chain_id"
        "  AND m.enterprise_id = h.enterprise_id)",
        {"at": at, "chain": chain_id},
    )
    await conn.execute(
        "INSERT INTO chain_member_history (chain_id, enterprise_id, tier, valid_from)"
        " SELECT m.chain_id, m.enterprise_id, m.tier, CASE WHEN EXISTS (SELECT 1"
        "  FROM chain_member_history o WHERE o.chain_id = m.chain_id"
        "  AND o.enterprise_id = m.enterprise_id) THEN %(at)s ELSE %(always)s END"
        " FROM chain_member m WHERE m.chain_id = %(chain)s AND NOT EXISTS"
        " (SELECT 1 FROM chain_member_history h WHERE h.chain_id = m.chain_id"
        "  AND h.enterprise_id = m.enterprise_id AND h.valid_to IS NULL)"
        " ON CONFLICT DO NOTHING",
        {"at": at, "always": ALWAYS, "chain": chain_id},
    )


async def _version(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    key: str,
    key_id: int,
    at: datetime,
    facts: dict[str, Any],
    first: datetime,
) -> None:
    """Keep ``table`` a history of ``facts``: a new version starts at ``at`` when they change;
    the first one at ``first``."""
    columns = list(facts)
    cur = await conn.execute(
        sql.SQL("SELECT {}, valid_from FROM {} WHERE {} = %s AND valid_to IS NULL").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(table),
            sql.Identifier(key),
        ),
        (key_id,),
    )
    current = await cur.fetchone()
    if current is not None and list(current[:-1]) == list(facts.values()):
        return
    start = first
    if current is not None:
        start = max(at, current[-1])
        if start == current[-1]:  # changed again at the instant it began: one version
            await conn.execute(
                sql.SQL("UPDATE {} SET {} WHERE {} = %s AND valid_to IS NULL").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(
                        sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns
                    ),
                    sql.Identifier(key),
                ),
                (*facts.values(), key_id),
            )
            return
        await conn.execute(
            sql.SQL("UPDATE {} SET valid_to = %s WHERE {} = %s AND valid_to IS NULL").format(
                sql.Identifier(table), sql.Identifier(key)
            ),
            (start, key_id),
        )
    await conn.execute(
        sql.SQL("INSERT INTO {} ({}, valid_from, {}) VALUES (%s, %s, {})").format(
            sql.Identifier(table),
            sql.Identifier(key),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        ),
        (key_id, start, *facts.values()),
    )


async def _keep_maintenance(conn: psycopg.AsyncConnection[Any], line_id: int, line: Line) -> None:
    """The line's maintenance windows become the document's (unchanged ones stay as they
    are)."""
    cur = await conn.execute(
        "SELECT id, starts_at, ends_at, reason FROM line_maintenance WHERE line_id = %s",
        (line_id,),
    )
    have = {(r[1], r[2], r[3]): r[0] for r in await cur.fetchall()}
    want = {(w.start, w.end, w.reason) for w in line.maintenance}
    gone = [i for key, i in have.items() if key not in want]
    if gone:
        await conn.execute("DELETE FROM line_maintenance WHERE id = ANY(%s)", (gone,))
    for start, end, reason in sorted(want - set(have)):
        await conn.execute(
            "INSERT INTO line_maintenance (line_id, starts_at, ends_at, reason)"
            " VALUES (%s, %s, %s, %s)",
            (line_id, start, end, reason),
        )


async def _upsert(conn: psycopg.AsyncConnection[Any], query: str, params: tuple[Any, ...]) -> int:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
