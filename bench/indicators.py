"""Indicator query latency: NC rate and networking rate of a chain over 30 days.

    .venv/bin/python bench/indicators.py [--scenario chain] [--days 30] [--requests 40]
                                         [--database postgres,timescaledb]

For each backend: imports the scenario's registry into a fresh database, generates the state of
every simulated machine for the last N days at 1 Hz resolution (stored as changes, as the
gateway publishes them) with one connectivity session each, and keeps the hourly usage roll-up
current as the ingest workers do while data arrives (timed: in operation that work is spread
over the N days, one hour at a time), then times GET /api/v1/chains/{id}/indicators?from=-N days
over HTTP from a freshly started API: the first (cold) request after that ingest, then p50/p95
of warm requests. The baseline, measured in the same run, is the cold request as it was when
nothing kept the roll-up current: the first request filled it (the roll-up is emptied after).

Backends: ``postgres`` is $PLANTWIRE_BENCH_DATABASE_URL's server or the local PostgreSQL;
``timescaledb`` is a private PostgreSQL 15 cluster with TimescaleDB preloaded (fsync on),
started for the run (plantwire_platform.timescaledb).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from pydantic import SecretStr

from plantwire_bus.mosquitto import free_port
from plantwire_platform import services, timescaledb
from plantwire_platform.accounts.people import create_person
from plantwire_platform.accounts.roles import Binding
from plantwire_platform.database import migrate
from plantwire_platform.indicators import usage as usage_rollup
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import api_server
from plantwire_platform.settings import PlatformSettings
from plantwire_sim.scenario import Machine, Scenario, load_scenario


def timeline(
    machine: Machine, rng: random.Random, start: int, end: int
) -> list[tuple[int, str, str]]:
    """(second, metric, value) changes: cycles of EXECUTING and IDLE; mostly AUTO unless the
    machine's program says it runs by hand."""
    executing = sum(s.seconds for s in machine.program if s.execution == "EXECUTING") or 1
    auto = sum(
        s.seconds for s in machine.program if s.execution == "EXECUTING" and s.mode == "AUTO"
    )
    auto_share = auto / executing
    out: list[tuple[int, str, str]] = []
    t = start - rng.randint(0, 600)
    mode = execution = ""
    while t < end:
        new_mode = "AUTO" if rng.random() < auto_share else "MANUAL"
        for metric, value in (("State/Mode", new_mode), ("State/Execution", "EXECUTING")):
            if (metric, value) != ("State/Mode", mode) and (metric, value) != (
                "State/Execution",
                execution,
            ):
                out.append((t, metric, value))
        mode, execution = new_mode, "EXECUTING"
        t += rng.randint(60, 600)
        out.append((t, "State/Execution", "IDLE"))
        execution = "IDLE"
        t += rng.randint(5, 120)
    return out


async def generate(url: str, scenario: Scenario, days: int) -> tuple[int, int]:
    end = int(time.time()) // 3600 * 3600
    start = end - days * 86400
    rng = random.Random(1)
    rows = 0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await import_registry(conn, registry_from(scenario.registry()))
        for ent, _site, m in scenario.machines():
            if m.protocol == "none":
                continue
            cur = await conn.execute(
                "SELECT e.id FROM equipment e JOIN site s ON s.id = e.site_id"
                " JOIN enterprise x ON x.id = s.enterprise_id WHERE x.code = %s AND e.code = %s",
                (ent.code, m.code),
            )
            row = await cur.fetchone()
            assert row is not None
            eid = row[0]
            series = {}
            for metric in ("State/Mode", "State/Execution"):
                cur = await conn.execute(
                    "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                    " equipment_id) VALUES (%s, 'GW', %s, %s, 12, %s) RETURNING id",
                    (ent.code, m.code, metric, eid),
                )
                got = await cur.fetchone()
                assert got is not None
                series[metric] = got[0]
            await conn.execute(
                "INSERT INTO connectivity_session (group_id, edge_node_id, device_id,"
                " equipment_id, online_at) VALUES (%s, 'GW', %s, %s, %s)",
                (ent.code, m.code, eid, datetime.fromtimestamp(start - 3600, UTC)),
            )
            changes = timeline(m, rng, start, end)
            async with (
                conn.cursor() as c,
                c.copy("COPY sample_text (series_id, ts, value) FROM STDIN") as copy,
            ):
                for t, metric, value in changes:
                    await copy.write_row((series[metric], datetime.fromtimestamp(t, UTC), value))
            rows += len(changes)
        await conn.commit()
        await conn.execute("ANALYZE")
        cur = await conn.execute("SELECT id FROM chain ORDER BY id LIMIT 1")
        chain = await cur.fetchone()
        assert chain is not None, "the scenario has no chain"
    return chain[0], rows


async def timed(http: httpx.AsyncClient, path: str, params: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await http.get(path, params=params)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return out


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


KEYS = (SecretStr(secrets.token_urlsafe(48)), SecretStr(secrets.token_urlsafe(48)))
TOKENS: dict[str, str] = {}


@contextlib.asynccontextmanager
async def api(
    url: str, password: str, statement_timeout_s: float = 20.0, deadline_s: float = 60.0
) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh API process's server (its worker processes new too), signed in (once a run:
    sign-ins are rate-limited; the servers share their keys)."""
    settings = PlatformSettings(
        api_statement_timeout_s=statement_timeout_s,
        api_deadline_s=deadline_s,
        database_url=url,
        api_port=free_port(),
        token_secret=KEYS[0],
        audit_key=KEYS[1],
    )
    server = api_server(settings)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}", timeout=600
        ) as http:
            if password not in TOKENS:
                signed = await http.post(
                    "/auth/token",
                    data={
                        "grant_type": "password",
                        "username": "bench-admin",
                        "password": password,
                    },
                )
                assert signed.status_code == 200, signed.text
                TOKENS[password] = signed.json()["access_token"]
            http.headers["Authorization"] = f"Bearer {TOKENS[password]}"
            yield http
    finally:
        server.should_exit = True
        await task


async def run(admin: str, backend: str, scenario: Scenario, days: int, requests: int) -> None:
    name = f"plantwire_bench_{uuid.uuid4().hex[:8]}"
    url = services.ensure_database(admin, name, fresh=True)
    try:
        await migrate(url)
        t = time.perf_counter()
        chain, rows = await generate(url, scenario, days)
        machines = sum(m.protocol != "none" for _, _, m in scenario.machines())
        print(
            f"[{backend}] {scenario.name}: {machines} machines with telemetry, {days} days, "
            f"{rows:,} state changes generated in {time.perf_counter() - t:.0f} s"
        )
        async with await psycopg.AsyncConnection.connect(url) as conn:
            password = await create_person(conn, "bench-admin", "platform_admin", Binding())
        now = datetime.now(UTC)
        params = {"from": (now - timedelta(days=days)).isoformat(), "to": now.isoformat()}
        path = f"/api/v1/chains/{chain}/indicators"

        # baseline: nothing keeps the roll-up current, the first request fills it (which takes
        # longer than the API's default bounds allow)
        async with api(url, password, statement_timeout_s=900, deadline_s=900) as http:
            filling = (await timed(http, path, params, 1))[0]
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("TRUNCATE usage_hour")
            t = time.perf_counter()
            hours = await usage_rollup.keep_current(conn)
        kept = time.perf_counter() - t
        print(
            f"[{backend}] hourly usage roll-up kept current: {hours:,} hours in {kept:.1f} s"
            " (in operation: each hour as it closes)"
        )
        async with api(url, password) as http:
            cold = (await timed(http, path, params, 1))[0]
            warm = await timed(http, path, params, requests)
            body = (await http.get(path, params=params)).json()
        rates = {i["name"]: i for i in body["indicators"]}
        print(
            f"[{backend}] chain NC rate verified {rates['nc_rate_verified']['value']}, declared "
            f"{rates['nc_rate_declared']['value']}, networking {rates['networking_rate']['value']}"
            f" ({rates['nc_rate_verified']['enterprises']} enterprises)"
        )
        print(f"[{backend}] cold request after ingest:            {cold:8.0f} ms")
        print(f"[{backend}] baseline, first request fills roll-up: {filling:8.0f} ms")
        print(
            f"[{backend}] warm:   p50 {statistics.median(warm):7.1f} ms"
            f"   p95 {p95(warm):7.1f} ms   ({len(warm)} requests)"
            f"   load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
    finally:
        services.drop_database(admin, name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="chain")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument(
        "--database", default="postgres,timescaledb", help="backends to measure, in order"
    )
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    for backend in args.database.split(","):
        if backend == "timescaledb":
            cluster = await asyncio.to_thread(timescaledb.start_cluster, durable=True)
            try:
                await run(cluster.url, backend, scenario, args.days, args.requests)
            finally:
                cluster.stop()
        elif backend == "postgres":
            admin = os.environ.get("PLANTWIRE_BENCH_DATABASE_URL", "postgresql:///postgres")
            await run(admin, backend, scenario, args.days, args.requests)
        else:
            parser.error(f"unknown backend {backend!r} (postgres, timescaledb)")


if __name__ == "__main__":
    asyncio.run(main())
