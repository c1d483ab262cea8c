"""Partner API throughput: the granted-indicator endpoint under concurrent clients.

    .venv/bin/python bench/partner_api.py [--clients 32] [--seconds 10] [--machines 10]

Creates a fresh database on the local PostgreSQL (or $PLANTWIRE_BENCH_DATABASE_URL's server):
a supplier with N machines and one hour of state changes per minute, an indicator dataset and an
active grant to its chain leader. Serves the API in a separate process (`plantwire platform
serve`), obtains a token through /oauth/token, then runs C concurrent clients for S seconds
against GET /partner/v1/datasets/{id}/indicators (token check, rate limit, grant re-read,
window clamped in SQL, indicator computation, hash-chained audit append) and prints requests/s
and p50/p99 latency. The baseline, measured in the same run with the same clients, is the
lead's unauthenticated GET /api/v1/enterprises/{id}/indicators for the same supplier and window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from plantwire_bus.mosquitto import free_port
from plantwire_platform import services
from plantwire_platform.database import migrate
from plantwire_platform.partner_tokens import create_client
from plantwire_platform.registry import import_scenario
from plantwire_sim.scenario import parse_scenario

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}


def scenario(machines: int) -> str:
    head = """
name = "partner-bench"
[[chains]]
code = "CH"
name = "Chain"
leader = "LEAD"
members = [{ enterprise = "SUP", tier = 1 }]
"""
    out = [head]
    for n, (code, count) in enumerate((("LEAD", 1), ("SUP", machines))):
        codes = [f"{code}{i}" for i in range(count)]
        procs = ", ".join(
            f'{{ code = "OP{i}", name = "OP{i}", is_key = true, equipment = ["{c}"] }}'
            for i, c in enumerate(codes)
        )
        out.append(f"""
[[enterprises]]
code = "{code}"
uscc = "9111000000000000{n}X"
name = "{code}"
[[enterprises.sites]]
code = "S"
name = "S"
edge_node = "GW{code}"
timezone = "UTC"
[[enterprises.sites.lines]]
code = "L"
name = "L"
processes = [{procs}]
""")
        for c in codes:
            out.append(f"""
[[enterprises.sites.machines]]
code = "{c}"
name = "{c}"
line = "L"
control_type = "CNC"
declared_nc = true
protocol = "none"
""")
    return "".join(out)


async def seed(url: str, machines: int) -> tuple[int, int, str]:
    """Registry, telemetry, dataset, grant and a client; returns (dataset, supplier, secret)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        ids = await import_scenario(conn, parse_scenario(scenario(machines)))
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) SELECT x.code, s.edge_node_id, e.code, e.id, %s FROM equipment e"
            " JOIN site s ON s.id = e.site_id JOIN enterprise x ON x.id = s.enterprise_id",
            (T0 - timedelta(hours=1),),
        )
        for metric in ("State/Mode", "State/Execution"):
            await conn.execute(
                "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                " equipment_id) SELECT x.code, s.edge_node_id, e.code, %s, 12, e.id"
                " FROM equipment e JOIN site s ON s.id = e.site_id"
                " JOIN enterprise x ON x.id = s.enterprise_id",
                (metric,),
            )
        await conn.execute(
            "INSERT INTO sample_text (series_id, ts, value)"
            " SELECT sr.id, %s + make_interval(mins => m),"
            " CASE WHEN sr.metric = 'State/Mode' THEN (CASE WHEN m %% 7 = 0 THEN 'MANUAL'"
            " ELSE 'AUTO' END) ELSE (CASE WHEN m %% 5 = 0 THEN 'IDLE' ELSE 'EXECUTING' END) END"
            " FROM series sr CROSS JOIN generate_series(-60, 59) AS m",
            (T0,),
        )
        cur = await conn.execute(
            "INSERT INTO partner_dataset (enterprise_id, code, title, kind, domain, grade,"
            " granularity, purposes) VALUES (%s, 'ind', 'Indicators', 'indicators', 'production',"
            " 'important', 'aggregated', '{planning}') RETURNING id",
            (ids["SUP"],),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            "INSERT INTO partner_grant (dataset_id, supplier_id, partner_id, purpose, granularity,"
            " status, expires_at, requested_by, window_start, window_end)"
            " VALUES (%s, %s, %s, 'planning', 'aggregated', 'active', now() + interval '1 day',"
            " 'bench', %s, %s)",
            (row[0], ids["SUP"], ids["LEAD"], T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
        )
        await conn.commit()
        secret = await create_client(conn, "lead-bench", "partner", ids["LEAD"])
    return row[0], ids["SUP"], secret


async def load(
    base: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    clients: int,
    seconds: float,
) -> tuple[float, list[float]]:
    """(requests/s, latencies in ms) of ``clients`` concurrent loops for ``seconds``."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as http:
        for _ in range(clients):  # warm the connections and the server
            assert (await http.get(path, params=params)).status_code == 200
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await http.get(path, params=params)
                latencies.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies


def pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def admin_url() -> str:
    explicit = os.environ.get("PLANTWIRE_BENCH_DATABASE_URL")
    for url in (
        (explicit,)
        if explicit
        else ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql:///postgres")
    ):
        if services.database_reachable(url):
            return url
    raise SystemExit("no PostgreSQL reachable: set PLANTWIRE_BENCH_DATABASE_URL")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--machines", type=int, default=10)
    args = parser.parse_args()
    admin = admin_url()
    name = f"plantwire_bench_{uuid.uuid4().hex[:8]}"
    url = services.ensure_database(admin, name, fresh=True)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PLANTWIRE_TOKEN_SECRET": secrets.token_urlsafe(48),
        "PLANTWIRE_PARTNER_RATE_PER_S": "1000000",
        "PLANTWIRE_PARTNER_BURST": "1000000",
    }
    server = None
    try:
        await migrate(url)
        dataset, supplier, secret = await seed(url, args.machines)
        server = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-c",
                "from plantwire_bus.cli import main; raise SystemExit(main())",
                "--log-level",
                "WARNING",
                "platform",
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            r = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "lead-bench",
                    "client_secret": secret,
                },
            )
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
        print(
            f"supplier with {args.machines} machines, 1 h window, {args.clients} concurrent "
            f"clients, {args.seconds:.0f} s each, API in one uvicorn process; {os.cpu_count()} "
            "CPUs shared by API, PostgreSQL and load generator"
        )
        partner = await load(
            base,
            f"/partner/v1/datasets/{dataset}/indicators",
            {**WINDOW, "purpose": "planning"},
            {"Authorization": f"Bearer {token}"},
            args.clients,
            args.seconds,
        )
        baseline = await load(
            base,
            f"/api/v1/enterprises/{supplier}/indicators",
            WINDOW,
            {},
            args.clients,
            args.seconds,
        )
        for label, (rate, lat) in (
            ("granted indicators (partner API)", partner),
            ("baseline: /api/v1 indicators, no auth/grant/audit", baseline),
        ):
            print(
                f"{label:52s} {rate:7.0f} req/s  p50 {pct(lat, 0.5):6.1f} ms"
                f"  p99 {pct(lat, 0.99):6.1f} ms  ({len(lat)} requests)"
            )
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT count(*) FROM partner_audit")
            audited = (await cur.fetchone() or (0,))[0]
        print(f"audit rows appended: {audited} (one per partner request)")
    finally:
        if server is not None:
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)
        services.drop_database(admin, name)


if __name__ == "__main__":
    asyncio.run(main())
