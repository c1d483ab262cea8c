"""The hourly usage roll-up kept current as data arrives (real database, both backends): every
closed hour stored by the keeper with hand-computed figures, nothing left for a request to fill,
and hours that late state samples touch recomputed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plantwire_platform.indicators.usage import SETTLE, keep_current
from tests.platform.indicators.demo_machine import demo_machine, rows

H = timedelta(hours=1)
M = timedelta(minutes=1)


# the hours are UTC hours whatever the connection's TimeZone (a server's default is its own
# zone; India's is half an hour off UTC, so its hours do not begin where UTC's do)
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
async def test_closed_hours_are_stored_as_data_arrives(database_url: str, zone: str) -> None:
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    t0 = now - 6 * H - 30 * M  # an hour boundary, 6.5 hours ago
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
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

        # a late mode change inside hour 1 (in its second half, where a zone half an hour off
        # UTC has begun its next hour): hours from 1 on are dropped and stored again
        await conn.execute(
            "INSERT INTO sample_text VALUES (%s, %s, 'MANUAL')", (mode, t0 + H + 45 * M)
        )
        assert len(await rows(conn, usage, t0, eid)) == 1
        assert await keep_current(conn, now + H) == 6  # and one more hour has closed
        assert await rows(conn, usage, t0, eid) == [
            (0, full, 1800.0, 1800.0, 0.0),
            (1, full, full, 2700.0, 0.0),
            (2, full, 1800.0, 0.0, 0.0),
            *[(h, full, 0.0, 0.0, 0.0) for h in range(3, 7)],
        ]
