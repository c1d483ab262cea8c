"""Indicator query latency: NC rate and networking rate of a chain over 30 days.

    .venv/bin/python bench/indicators.py [--scenario chain] [--days 30] [--requests 40]

Imports the scenario's registry into a fresh database on the local PostgreSQL (or
$PLANTWIRE_BENCH_DATABASE_URL's server), generates the state of every simulated machine for the
last N days at 1 Hz resolution (stored as changes, as the gateway publishes them) with one
connectivity session each, then times GET /api/v1/chains/{id}/indicators?from=-N days over HTTP:
the first (cold) request, which fills the hourly roll-up, then p50/p95 of warm requests. The
baseline, measured in the same run, is the same query computed exactly from the samples with the
roll-up disabled.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
from pydantic import SecretStr

from plantwire_bus.mosquitto import free_port
from plantwire_platform import services
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="chain")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    admin = os.environ.get("PLANTWIRE_BENCH_DATABASE_URL", "postgresql:///postgres")
    name = f"plantwire_bench_{uuid.uuid4().hex[:8]}"
    url = services.ensure_database(admin, name, fresh=True)
    try:
        await migrate(url)
        t = time.perf_counter()
        chain, rows = await generate(url, scenario, args.days)
        machines = sum(m.protocol != "none" for _, _, m in scenario.machines())
        print(
            f"{scenario.name}: {machines} machines with telemetry, {args.days} days, "
            f"{rows:,} state changes generated in {time.perf_counter() - t:.0f} s"
        )
        settings = PlatformSettings(
            database_url=url,
            api_port=free_port(),
            token_secret=SecretStr(secrets.token_urlsafe(48)),
            audit_key=SecretStr(secrets.token_urlsafe(48)),
        )
        async with await psycopg.AsyncConnection.connect(url) as conn:
            password = await create_person(conn, "bench-admin", "platform_admin", Binding())
        server = api_server(settings)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        now = datetime.now(UTC)
        params = {"from": (now - timedelta(days=args.days)).isoformat(), "to": now.isoformat()}
        path = f"/api/v1/chains/{chain}/indicators"
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}", timeout=600
        ) as http:
            signed = await http.post(
                "/auth/token",
                data={"grant_type": "password", "username": "bench-admin", "password": password},
            )
            http.headers["Authorization"] = f"Bearer {signed.json()['access_token']}"
            cold = (await timed(http, path, params, 1))[0]
            warm = await timed(http, path, params, args.requests)
            body = (await http.get(path, params=params)).json()
            usage_rollup.SETTLE = timedelta(days=10_000)  # baseline: nothing from the roll-up
            exact = await timed(http, path, params, max(3, args.requests // 10))
        server.should_exit = True
        await task
        rates = {i["name"]: i for i in body["indicators"]}
        print(
            f"chain NC rate verified {rates['nc_rate_verified']['value']}, declared "
            f"{rates['nc_rate_declared']['value']}, networking {rates['networking_rate']['value']}"
            f" ({rates['nc_rate_verified']['enterprises']} enterprises)"
        )
        print(f"cold request (fills the hourly roll-up): {cold:8.0f} ms")
        print(
            f"warm, roll-up:   p50 {statistics.median(warm):7.1f} ms   p95 {p95(warm):7.1f} ms"
            f"   ({len(warm)} requests)"
        )
        print(
            f"baseline, exact: p50 {statistics.median(exact):7.1f} ms   p95 {p95(exact):7.1f} ms"
            f"   ({len(exact)} requests)"
        )
    finally:
        services.drop_database(admin, name)


if __name__ == "__main__":
    asyncio.run(main())
