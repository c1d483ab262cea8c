"""Nothing lost, end to end: a real asyncua server, the gateway with a durable buffer, a real
Mosquitto, the ingest and PostgreSQL; counted against the values the server wrote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from asyncua import ua

from plantwire_edge.config import EdgeConfig, parse_config
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

from .conftest import UaServer, running, ua_server


def gateway_config(
    srv: UaServer, tmp: Path, mqtt_url: str, group: str, host: str | None, **extra: Any
) -> EdgeConfig:
    lines = [
        f'group_id = "{group}"',
        'edge_node_id = "GW"',
        f'mqtt_url = "{mqtt_url}"',
        f'primary_host_id = "{host or ""}"',
        "batch_ms = 50",
        *(f"{k} = {v}" for k, v in extra.items()),
        "[buffer]",
        f'path = "{tmp / "buffer.db"}"',
        "[[devices]]",
        'kind = "opcua"',
        'device_id = "M1"',
        f'endpoint = "{srv.endpoint}"',
        "publishing_interval_ms = 50",
    ]
    for name in srv.nodes:
        lines += ["[[devices.tags]]", f'node = "{srv.address(name)}"', f'metric = "{name}"']
    return parse_config("\n".join(lines))


@asynccontextmanager
async def ingest(database_url: str, mqtt_url: str, host: str) -> AsyncIterator[IngestWorker]:
    settings = PlatformSettings(
        database_url=database_url, mqtt_url=mqtt_url, host_id=host, batch_age_ms=50
    )
    worker = IngestWorker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 10)
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def stored_values(database_url: str, group: str) -> list[tuple[str, int, float]]:
    """(metric, ts in µs, value) of every DDATA/DBIRTH sample stored for ``group``."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT s.metric, (extract(epoch FROM t.ts) * 1000000)::bigint, t.value"
            " FROM sample_num t JOIN series s ON s.id = t.series_id"
            " WHERE s.group_id = %s ORDER BY s.metric, t.ts",
            (group,),
        )
        return [(m, int(ts), float(v)) for m, ts, v in await cur.fetchall()]


async def wait_stored(database_url: str, group: str, expected: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = len(await stored_values(database_url, group))
        if n >= expected:
            break
        await asyncio.sleep(0.1)
    return n


async def test_bursts_within_one_millisecond_are_all_stored_in_order(
    tmp_path: Path, mqtt_url: str, database_url: str, group: str, unique: str
) -> None:
    """Five writes of one variable stamped with the same millisecond, every 200 ms: every
    value reaches PostgreSQL, in the order written, none doubled."""
    host = f"h{unique}"
    variables = {"Burst": (ua.VariantType.Double, 0.0), "Other": (ua.VariantType.Double, 0.0)}
    async with (
        ua_server(variables) as srv,
        ingest(database_url, mqtt_url, host),
        running(gateway_config(srv, tmp_path, mqtt_url, group, host)) as gateway,
    ):
        await asyncio.wait_for(gateway.adapters[0].connected.wait(), 20)
        await asyncio.sleep(0.5)
        srv.written.clear()
        stamp = int(time.time() * 1000)
        for burst in range(10):
            stamp = max(stamp + 1, int(time.time() * 1000))
            for i in range(5):
                await srv.write("Burst", burst * 10.0 + i + 0.5, stamp)
            await srv.write("Other", burst + 0.25, stamp)
            await asyncio.sleep(0.2)
        first = srv.written[0][2]
        await wait_stored(database_url, group, 60 + 2)
        await asyncio.sleep(0.5)
    rows = await stored_values(database_url, group)
    got = [(m, ts, v) for m, ts, v in rows if ts >= first * 1000]
    expected = []
    for name in ("Burst", "Other"):  # the n-th value of a millisecond n µs after it
        ordinal: dict[int, int] = {}
        for written, value, ts in srv.written:
            if written == name:
                n = ordinal[ts] = ordinal.get(ts, -1) + 1
                expected.append((name, ts * 1000 + n, value))
    assert got == expected
