"""The hourly usage roll-up kept current as data arrives (real database, both backends): every
closed hour stored by the keeper with hand-computed figures, nothing left for a request to fill,
and hours that late state samples touch recomputed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from plantwire_platform.indicators.usage import SETTLE, keep_current
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_sim.scenario import load_scenario

H = timedelta(hours=1)
M = timedelta(minutes=1)


async def rows(conn: psycopg.AsyncConnection[Any], sql: str, *params: Any) -> list[Any]:
    cur = await conn.execute(sql.encode(), params or None)
    return await cur.fetchall()


async def test_closed_hours_are_stored_as_data_arrives(database_url: str) -> None:
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    t0 = now - 6 * H - 30 * M  # an hour boundary, 6.5 hours ago
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await import_registry(conn, registry_from(load_scenario("demo").registry()))
        eid = (await rows(conn, "SELECT id FROM equipment WHERE code = 'CNC-01'"))[0][0]
        made = await rows(
            conn,
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
            " equipment_id) VALUES ('HXP', 'GW', 'CNC-01', 'State/Mode', 12, %s),"
            " ('HXP', 'GW', 'CNC-01', 'State/Execution', 12, %s) RETURNING id",
            eid,
            eid,
        )
        mode, execution = (r[0] for r in made)
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) VALUES ('HXP', 'GW', 'CNC-01', %s, %s)",
            (eid, t0),
        )
        states = [
            (mode, t0, "AUTO"),
            (execution, t0, "IDLE"),
            (execution, t0 + 30 * M, "EXECUTING"),
            (execution, t0 + 2 * H + 30 * M, "IDLE"),
        ]
        for series, ts, value in states:
            await conn.execute("INSERT INTO sample_text VALUES (%s, %s, %s)", (series, ts, value))

        stored = await keep_current(conn, now)
        closed = int((now - SETTLE - t0) / H)  # hours that ended SETTLE ago: 6
        assert (stored, closed) == (6, 6)
        usage = (
            "SELECT extract(epoch FROM hour - %s) / 3600, observed_s, executing_s, auto_s, mdi_s"
            " FROM usage_hour WHERE equipment_id = %s ORDER BY hour"
        )
        full = 3600.0
        assert await rows(conn, usage, t0, eid) == [
            (0, full, 1800.0, 1800.0, 0.0),
            (1, full, full, full, 0.0),
            (2, full, 1800.0, 1800.0, 0.0),
            *[(h, full, 0.0, 0.0, 0.0) for h in range(3, 6)],
        ]
        assert await keep_current(conn, now) == 0  # nothing left to fill

        # a late mode change inside hour 1: hours from 1 on are dropped and stored again
        await conn.execute(
            "INSERT INTO sample_text VALUES (%s, %s, 'MANUAL')", (mode, t0 + H + 15 * M)
        )
        assert len(await rows(conn, usage, t0, eid)) == 1
        assert await keep_current(conn, now + H) == 6  # and one more hour has closed
        assert await rows(conn, usage, t0, eid) == [
            (0, full, 1800.0, 1800.0, 0.0),
            (1, full, full, 900.0, 0.0),
            (2, full, 1800.0, 0.0, 0.0),
            *[(h, full, 0.0, 0.0, 0.0) for h in range(3, 7)],
        ]
