"""Requests that cannot stall the platform: a running demo hammered with ten-year indicator
requests.

    .venv/bin/python bench/api_bounds.py [--clients 10] [--seconds 60] [--client-timeout 15]

Starts ``plantwire demo`` (its own data directory under a temporary folder; ``DATABASE_URL``
is used when set) and waits until telemetry is stored. Then, in the same run:

* baseline: ``/healthz`` latency on the idle demo (one request every 50 ms for 10 s);
* load: ``--clients`` clients each asking, over and over, for an enterprise's indicators over
  ten years cut into months (``2016-01-01 .. 2026-01-01, bucket=month``), giving up (and so
  disconnecting) after ``--client-timeout`` seconds, while ``/healthz`` is probed as above and
  over-limit requests (401 months) are timed;
* after the load: the API's statements still running in PostgreSQL, sampled until none is
  left (each must end within the statement timeout of its request's client going away);
* the simulators' and the gateway's logs during the load, searched for timeouts.

Prints p50/p95/p99/max of each latency, the heavy requests by outcome, and the findings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from plantwire_bus.mosquitto import free_port

TEN_YEARS = {"from": "2016-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "bucket": "month"}
OVER_LIMIT = {"from": "1990-01-01T00:00:00Z", "to": "2023-06-01T00:00:00Z", "bucket": "month"}
TIMEOUT_WORDS = re.compile(r"time(d)? ?out|TimeoutError|timeout", re.IGNORECASE)


def quantiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"n={len(values)} p50 {at(0.5):.1f} ms, p95 {at(0.95):.1f} ms, "
        f"p99 {at(0.99):.1f} ms, max {max(values) * 1000:.1f} ms"
    )


async def probe(client: httpx.AsyncClient, path: str, until: float, every: float) -> list[float]:
    out = []
    while time.monotonic() < until:
        started = time.perf_counter()
        r = await client.get(path)
        out.append(time.perf_counter() - started)
        assert r.status_code in (200, 422), r.text
        await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))
    return out


async def hammer(
    base: str,
    ent: int,
    until: float,
    timeout: float,
    outcomes: dict[str, int],
    headers: dict[str, str],
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=timeout, headers=headers) as client:
        while time.monotonic() < until:
            try:
                r = await client.get(f"/api/v1/enterprises/{ent}/indicators", params=TEN_YEARS)
                key = f"{r.status_code} {r.json().get('error', '') if r.status_code != 200 else ''}"
            except httpx.TimeoutException:
                key = "gave up (disconnected)"
            outcomes[key.strip()] = outcomes.get(key.strip(), 0) + 1


def api_statements(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND pid <> pg_backend_pid()"
            " AND application_name NOT LIKE 'plantwire-ingest%'"
            " AND query NOT ILIKE '%INSERT%' AND query NOT ILIKE '%COPY%'"
            " AND backend_type = 'client backend'"
        ).fetchone()
    return int(row[0]) if row else 0


def log_sizes(logs: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in logs.glob("*.log")}


def timeouts_since(sizes: dict[Path, int], logs: Path) -> list[str]:
    found = []
    for path in sorted(logs.glob("*.log")):
        if not (path.name.startswith("sim") or path.name.startswith("edge-")):
            continue
        with path.open("rb") as f:
            f.seek(sizes.get(path, 0))
            for line in f.read().decode(errors="replace").splitlines():
                if TIMEOUT_WORDS.search(line):
                    found.append(f"{path.name}: {line}")
    return found


def start_demo(folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MQTT_URL", None)
    argv = [sys.executable, "-m", "plantwire.cli", "demo", "--port", str(port)]
    with (folder / "demo.out").open("wb") as log:
        return subprocess.Popen(
            [*argv, "--data-dir", str(folder / "data")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


async def run(
    args: argparse.Namespace, folder: Path, port: int, demo: subprocess.Popen[bytes]
) -> None:
    base = f"http://127.0.0.1:{port}"
    out = folder / "demo.out"
    deadline = time.monotonic() + 180
    while "Press Ctrl-C" not in out.read_text():
        assert demo.poll() is None and time.monotonic() < deadline, out.read_text()[-2000:]
        await asyncio.sleep(0.5)
    database_url = re.search(r"(?m)^\s+database\s+(\S+)$", out.read_text())
    assert database_url is not None
    db = database_url.group(1)
    await asyncio.sleep(20)  # telemetry flowing
    logs = folder / "data" / "logs"
    accounts = json.loads((folder / "data" / "accounts.json").read_text())
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        signed = await client.post(
            "/auth/token",
            data={
                "grant_type": "password",
                "username": "admin",
                "password": accounts["admin"]["password"],
            },
        )
        client.headers["Authorization"] = f"Bearer {signed.json()['access_token']}"
        ent = (await client.get("/api/v1/enterprises")).json()[0]["id"]
        idle = await probe(client, "/healthz", time.monotonic() + 10, 0.05)
        print(f"baseline, idle demo:  /healthz {quantiles(idle)}")

        sizes = log_sizes(logs)
        outcomes: dict[str, int] = {}
        until = time.monotonic() + args.seconds
        hammers = [
            asyncio.create_task(
                hammer(base, ent, until, args.client_timeout, outcomes, dict(client.headers))
            )
            for _ in range(args.clients)
        ]
        await asyncio.sleep(2)
        busy = asyncio.create_task(probe(client, "/healthz", until, 0.05))
        over = await probe(
            client,
            f"/api/v1/enterprises/{ent}/indicators?"
            + "&".join(f"{k}={v}" for k, v in OVER_LIMIT.items()),
            until - 5,
            1.0,
        )
        loaded = await busy
        await asyncio.gather(*hammers)
        ended = time.monotonic()
        print(
            f"under load, {args.clients} clients of ten-year month-bucket requests for "
            f"{args.seconds} s:"
        )
        print(f"  /healthz              {quantiles(loaded)}")
        print(f"  over-limit (422)      {quantiles(over)}")
        print(f"  heavy requests        {dict(sorted(outcomes.items()))}")
        health = (await client.get("/healthz")).json()
        print(f"  computations          {health['computations']}")
    left = []
    while (n := api_statements(db)) and time.monotonic() - ended < 120:
        left.append(n)
        await asyncio.sleep(0.5)
    outlived = time.monotonic() - ended
    print(
        f"  API statements left after the clients stopped: {left[:1] or [0]} -> 0 after "
        f"{outlived:.1f} s (statement timeout 20 s)"
    )
    found = timeouts_since(sizes, logs)
    print(f"  timeouts in simulator and gateway logs during the load: {len(found)}")
    for line in found[:10]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--client-timeout", type=float, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="plantwire-bench-bounds-"))
    port = free_port()
    demo = start_demo(folder, port)
    try:
        asyncio.run(run(args, folder, port, demo))
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)


if __name__ == "__main__":
    main()
