"""Partner API throughput: the granted-indicator endpoint under concurrent clients.

    .venv/bin/python bench/partner_api.py [--clients 4,16,32] [--seconds 10] [--machines 10]

Creates a fresh database on the local PostgreSQL (or $PLANTWIRE_BENCH_DATABASE_URL's server):
a supplier with N machines and one hour of state changes per minute, an indicator dataset and an
active grant to its chain leader. Serves the API in a separate process (`plantwire platform
serve --no-access-log`), obtains a token through /oauth/token, then, for each number of clients
C, runs C concurrent keep-alive connections for S seconds against each case and prints
requests/s and p50/p99 latency:

- GET /partner/v1/datasets/{id}/indicators for a past hour (token check, rate limit, access
  decided in the database, window clamped in SQL, indicator values reused while the supplier's
  data versions hold, keyed hash-chained audit entry committed before the answer);
- the same with the value cache off (a second API process with PLANTWIRE_PARTNER_CACHE_S=0):
  every call computes the indicators;
- baseline, same run and clients: the lead's unauthenticated GET
  /api/v1/enterprises/{id}/indicators for the same supplier and window (computed every call);
- floor: GET /healthz (one `SELECT 1`), what the HTTP stack costs by itself.

The load generator speaks HTTP/1.1 over asyncio streams itself: an httpx client pool in the
same Python process tops out around 400-1,000 requests/s on this machine, so it would measure
the client rather than the API. At the end the audit chain is verified and its rows counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import psycopg

from plantwire_bus.mosquitto import free_port
from plantwire_platform import services
from plantwire_platform.accounts.people import create_person
from plantwire_platform.accounts.roles import Binding
from plantwire_platform.database import migrate
from plantwire_platform.partner.audit_chain import AuditKey, verify
from plantwire_platform.partner.tokens import create_client
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
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
            f'{{ code = "OP{i}", name = "OP{i}", is_key = true, key_reason = "fit",'
            f' equipment = ["{c}"] }}'
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
[[enterprises.sites.equipment]]
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
        ids = await import_registry(
            conn, registry_from(parse_scenario(scenario(machines)).registry())
        )
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
    port: int, path: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[float, list[float]]:
    """(requests/s, latencies in ms) of ``clients`` keep-alive connections for ``seconds``."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{head}\r\n".encode()
    latencies: list[float] = []

    async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request)
        answer = await reader.readuntil(b"\r\n\r\n")
        status, _, rest = answer.partition(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in rest.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        assert status.split(b" ")[1] == b"200", (status, body[:300])

    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    for reader, writer in connections:  # warm the connections and the server
        await get(reader, writer)
    stop = time.perf_counter() + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await get(reader, writer)
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in connections))
    elapsed = time.perf_counter() - start
    for _, writer in connections:
        writer.close()
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


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], port: int) -> AsyncIterator[None]:
    """`plantwire platform serve` on ``port`` until the block ends."""
    server = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-c",
            "from plantwire.cli import main; raise SystemExit(main())",
            "--log-level",
            "WARNING",
            "platform",
            "serve",
            "--no-access-log",
            "--port",
            str(port),
        ],
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", default="16", help="comma-separated, e.g. 4,16,32")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--machines", type=int, default=10)
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    admin = admin_url()
    name = f"plantwire_bench_{uuid.uuid4().hex[:8]}"
    url = services.ensure_database(admin, name, fresh=True)
    audit_key = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PLANTWIRE_TOKEN_SECRET": secrets.token_urlsafe(48),
        "PLANTWIRE_AUDIT_KEY": audit_key,
        "PLANTWIRE_PARTNER_RATE_PER_S": "1000000",
        "PLANTWIRE_PARTNER_BURST": "1000000",
        # the baseline's computations wait for a slot rather than answer 503 busy
        "PLANTWIRE_API_COMPUTE_QUEUE": "1000",
    }
    partner = f"/partner/v1/datasets/{{}}/indicators?{urlencode({**WINDOW, 'purpose': 'planning'})}"
    results: dict[tuple[int, str], tuple[float, list[float]]] = {}
    try:
        await migrate(url)
        dataset, supplier, secret = await seed(url, args.machines)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            password = await create_person(conn, "bench-admin", "platform_admin", Binding())
        port = free_port()
        async with serving(env, port):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                r = await http.post(
                    "/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": "lead-bench",
                        "client_secret": secret,
                    },
                )
                assert r.status_code == 200, r.text
                signed = await http.post(
                    "/auth/token",
                    data={
                        "grant_type": "password",
                        "username": "bench-admin",
                        "password": password,
                    },
                )
                assert signed.status_code == 200, signed.text
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            person = {"Authorization": f"Bearer {signed.json()['access_token']}"}
            baseline = f"/api/v1/enterprises/{supplier}/indicators?{urlencode(WINDOW)}"
            for c in counts:
                results[c, CASES[0]] = await load(
                    port, partner.format(dataset), auth, c, args.seconds
                )
                results[c, CASES[2]] = await load(port, baseline, person, c, args.seconds)
                results[c, CASES[3]] = await load(port, "/healthz", {}, c, args.seconds)
        port = free_port()  # the same partner API without the value cache
        async with serving({**env, "PLANTWIRE_PARTNER_CACHE_S": "0"}, port):
            for c in counts:
                results[c, CASES[1]] = await load(
                    port, partner.format(dataset), auth, c, args.seconds
                )
        print(
            f"supplier with {args.machines} machines, 1 h window, {args.seconds:.0f} s per case;"
            f" API in one uvicorn process; {os.cpu_count()} CPUs shared by API, PostgreSQL and"
            " load generator"
        )
        print(f"{'clients':>7}  {'case':52s} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} requests")
        for c in counts:
            for case in CASES:
                rate, lat = results[c, case]
                print(
                    f"{c:7d}  {case:52s} {rate:7.0f} {pct(lat, 0.5):7.1f}"
                    f" {pct(lat, 0.99):7.1f} {len(lat):8d}"
                )
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM partner_audit WHERE action NOT LIKE 'enterprise.%'"
            )
            audited = (await cur.fetchone() or (0,))[0]
            await conn.commit()
            verdict = await verify(conn, AuditKey(audit_key))
        calls = sum(len(lat) + c for (c, case), (_, lat) in results.items() if case in CASES[:2])
        print(
            f"audit: {audited} rows for {calls} partner calls (timed and warm-up) and the token"
            " request,"
            f" chain {'intact' if verdict.ok else 'BROKEN'}"
        )
    finally:
        services.drop_database(admin, name)


CASES = (
    "granted indicators (partner API)",
    "granted indicators, value cache off",
    "baseline: /api/v1 indicators (token, audit, no grant)",
    "floor: /healthz (SELECT 1)",
)


if __name__ == "__main__":
    asyncio.run(main())
