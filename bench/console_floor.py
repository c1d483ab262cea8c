"""The Floor's live look: the statement each floor stream runs once a second.

    .venv/bin/python bench/console_floor.py [--machines 200] [--alarms 2000] [--looks 300]

Makes a fresh database on the local PostgreSQL (``PLANTWIRE_TEST_DATABASE_URL`` or
``postgresql://postgres@127.0.0.1:5432/postgres``), migrated, with one enterprise of
``--machines`` machines, each with a day of mode/execution intervals (one change a minute),
an open session, a part count sampled every 10 s for a day, and two alarm metrics with
``--alarms`` events each. Then times ``--looks`` reads of the floor (the statement of
``GET /api/v1/enterprises/{id}/floor`` and of each look of its event stream), prints p50, p95,
p99 and max with the machine's load average, and drops the database.

What it tells: one stream costs one such statement a second, so a floor of N machines serves
about 1 / p50 streams per core before the looks queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from plantwire_platform import services
from plantwire_platform.api.floor import read_floor
from plantwire_platform.database import migrate

ADMIN = os.environ.get(
    "PLANTWIRE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def seed(url: str, machines: int, alarms: int) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "INSERT INTO enterprise (code, uscc, name) VALUES ('BEN', '91320000MA1BENCH1X',"
            " 'Bench') RETURNING id"
        )
        (ent,) = await cur.fetchone() or (0,)
        cur = await conn.execute(
            "INSERT INTO site (enterprise_id, code, name, timezone, edge_node_id)"
            " VALUES (%s, 'S1', 'Site', 'Asia/Shanghai', 'GW') RETURNING id",
            (ent,),
        )
        (site,) = await cur.fetchone() or (0,)
        await conn.execute(
            "INSERT INTO equipment (site_id, code, name, control_type, declared_nc)"
            " SELECT %s, 'M' || n, 'Machine ' || n, 'CNC', true FROM generate_series(1, %s) n",
            (site, machines),
        )
        await conn.execute(
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype, equipment_id)"
            " SELECT 'BEN', 'GW', q.code, m.metric, m.datatype, q.id FROM equipment q,"
            " (VALUES ('State/Mode', 12), ('State/Execution', 12), ('Production/PartCount', 10),"
            "  ('Alarm/Spindle', 12), ('Alarm/Door', 12)) AS m(metric, datatype)"
            " WHERE q.site_id = %s",
            (site,),
        )
        week = 24 * 60  # a day of one change a minute
        await conn.execute(
            "INSERT INTO state_interval (series_id, start_at, end_at, value)"
            " SELECT r.id, %(now)s - make_interval(mins => n),"
            "  CASE WHEN n = 1 THEN NULL ELSE %(now)s - make_interval(mins => n - 1) END,"
            "  CASE WHEN r.metric = 'State/Mode' THEN (ARRAY['AUTO','MANUAL'])[1 + n %% 2]"
            "  ELSE (ARRAY['EXECUTING','IDLE','FAULT'])[1 + n %% 3] END"
            " FROM series r, generate_series(1, %(week)s) n WHERE r.metric LIKE 'State/%%'",
            {"now": now, "week": week},
        )
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) SELECT 'BEN', 'GW', code, id, %s FROM equipment WHERE site_id = %s",
            (now - timedelta(days=7), site),
        )
        await conn.execute(
            "INSERT INTO sample_num (series_id, ts, value) SELECT r.id,"
            " %(now)s - make_interval(secs => 10 * n), 8640 - n FROM series r,"
            " generate_series(0, 8639) n WHERE r.metric = 'Production/PartCount'",
            {"now": now},
        )
        await conn.execute(
            "INSERT INTO event (ts, group_id, edge_node_id, device_id, kind, name, series_id,"
            " value) SELECT %(now)s - make_interval(secs => 60 * n), r.group_id, r.edge_node_id,"
            " r.device_id, 'alarm', r.metric, r.id, CASE WHEN n %% 2 = 0 THEN '0' ELSE 'raised'"
            " END FROM series r, generate_series(0, %(alarms)s - 1) n"
            " WHERE r.metric LIKE 'Alarm/%%'",
            {"now": now, "alarms": alarms},
        )
        await conn.commit()
        await conn.execute("ANALYZE")
        return int(ent)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--alarms", type=int, default=2000)
    parser.add_argument("--looks", type=int, default=300)
    args = parser.parse_args()
    name = f"plantwire_bench_{uuid.uuid4().hex[:8]}"
    url = services.ensure_database(ADMIN, name, fresh=True)
    try:
        await migrate(url)
        started = time.perf_counter()
        ent = await seed(url, args.machines, args.alarms)
        print(f"seeded {args.machines} machines in {time.perf_counter() - started:.1f} s")
        took = []
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            floor = await read_floor(conn, ent, None)
            assert len(floor) == args.machines and all(m.online for m in floor)
            for _ in range(args.looks):
                t = time.perf_counter()
                await read_floor(conn, ent, None)
                took.append((time.perf_counter() - t) * 1000)
        took.sort()
        q = statistics.quantiles(took, n=100)
        print(
            f"floor of {args.machines} machines, {args.looks} looks: p50 {q[49]:.1f} ms,"
            f" p95 {q[94]:.1f} ms, p99 {q[98]:.1f} ms, max {took[-1]:.1f} ms"
        )
        print(
            f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            f" on {os.cpu_count()} cores"
        )
    finally:
        services.drop_database(ADMIN, name)


if __name__ == "__main__":
    asyncio.run(main())
