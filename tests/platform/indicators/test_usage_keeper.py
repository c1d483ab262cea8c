"""The hourly usage roll-up kept current as data arrives (real database, both backends): every
closed hour stored by the keeper with hand-computed figures, nothing left for a request to fill,
and hours that late state samples touch recomputed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from plantwire_platform.indicators.usage import SETTLE, keep_current
from tests.platform.indicators.demo_machine import demo_machine, rows

H = timedelta(hours=1)
M = timedelta(minutes=1)


async def test_closed_hours_are_stored_as_data_arrives(database_url: str) -> None:
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    t0 = now - 6 * H - 30 * M  # an hour boundary, 6.5 hours ago
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        m = await demo_machine(conn)
        eid, mode, execution = m.equipment, m.mode, m.execution
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
