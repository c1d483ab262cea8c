"""The demo plant's CNC-01 in a fresh database, for the usage roll-up tests: the registry
imported, the site's shift plan set when asked, and the machine's two state series."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_sim.scenario import load_scenario


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> list[Any]:
    cur = await conn.execute(sql.encode(), params or None)
    return await cur.fetchall()


@dataclass(frozen=True)
class Machine:
    enterprise: int
    timezone: str
    equipment: int
    mode: int  # its State/Mode series
    execution: int  # its State/Execution series


async def demo_machine(
    conn: psycopg.AsyncConnection[Any],
    shifts: str | None = None,
    workdays: Iterable[int] = range(7),
) -> Machine:
    """CNC-01 of the demo plant (``conn`` in autocommit mode), its site planned by ``shifts``
    on ``workdays`` when given."""
    await import_registry(conn, registry_from(load_scenario("demo").registry()))
    ent, tz, eid = (
        await rows(
            conn,
            "SELECT s.enterprise_id, s.timezone, e.id FROM equipment e"
            " JOIN site s ON s.id = e.site_id WHERE e.code = 'CNC-01'",
        )
    )[0]
    if shifts is not None:
        await conn.execute(
            "UPDATE site SET shifts = %s, workdays = %s WHERE enterprise_id = %s",
            (shifts, list(workdays), ent),
        )
    mode, execution = (
        r[0]
        for r in await rows(
            conn,
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
            " equipment_id) VALUES ('HXP', 'GW', 'CNC-01', 'State/Mode', 12, %s),"
            " ('HXP', 'GW', 'CNC-01', 'State/Execution', 12, %s) RETURNING id",
            eid,
            eid,
        )
    )
    return Machine(ent, tz, eid, mode, execution)
