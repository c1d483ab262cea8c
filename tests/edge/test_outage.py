"""Acceptance: a 60 s broker outage while machines produce, survived by two gateway
processes, one of which is killed with SIGKILL in the middle of the outage and restarted.

Real services throughout: an asyncua server whose writes are the ground truth, two
``plantwire edge run`` processes with durable buffers, a Mosquitto that is stopped for 60 s,
and the platform's ingest writing to PostgreSQL. Both scenarios run at once so the suite pays
for one outage.

What "every sample" means for the killed gateway: values that reached its buffer before the
kill (it commits every 100 ms; the window stops 1 s before the kill) and values produced after
it came back (from 1 s after it reported the device connected again). Values the machine
produced while no gateway process existed cannot be observed by OPC UA subscriptions and are
left out of both sides of the comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asyncua import ua

from plantwire_bus.mosquitto import MosquittoProcess, free_port, start_mosquitto
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

from .conftest import UaServer, http_get, ua_server

OUTAGE_S = 60.0
KILL_AT_S = 20.0  # into the outage
RESTART_AT_S = 25.0
MARGIN_MS = 1_000
TICK_S = 0.2
PLANTWIRE = Path(sys.executable).with_name("plantwire")
MODE_CODES = {0: "MANUAL", 1: "AUTO", 2: "SETUP"}  # plantwire/ModeCode, by hand
VARIABLES = ("Speed", "Count", "Mode", "Running")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def gateway_toml(
    tmp: Path, name: str, device: str, srv: UaServer, broker: str, host: str, group: str, port: int
) -> Path:
    tags = [
        (f"{device}.Speed", "Spindle/Speed", "Double", None),
        (f"{device}.Count", "Production/PartCount", "UInt32", None),
        (f"{device}.Mode", "State/Mode", "String", "plantwire/ModeCode"),
        (f"{device}.Running", "Running", "Boolean", None),
    ]
    lines = [
        f'group_id = "{group}"',
        f'edge_node_id = "{name}"',
        f'mqtt_url = "{broker}"',
        f'primary_host_id = "{host}"',
        "batch_ms = 100",
        "[buffer]",
        f'path = "{tmp / (name + ".db")}"',
        "[http]",
        f'listen = "127.0.0.1:{port}"',
        "[[devices]]",
        'kind = "opcua"',
        f'device_id = "{device}"',
        f'endpoint = "{srv.endpoint}"',
    ]
    for variable, metric, datatype, table in tags:
        lines += [
            "[[devices.tags]]",
            f'node = "{srv.address(variable)}"',
            f'metric = "{metric}"',
            f'datatype = "{datatype}"',
        ] + ([f'map = "{table}"'] if table else [])
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class GatewayProcess:
    """``plantwire edge run CONFIG`` as a child process, watched through /healthz."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                str(PLANTWIRE), "edge", "run", str(self.config), stdout=out, stderr=out
            )

    async def health(self) -> dict[str, Any]:
        try:
            _, body = await http_get(self.port, "/healthz")
        except OSError:
            return {}
        doc: dict[str, Any] = json.loads(body)
        return doc

    async def wait(self, what: str, check: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = await self.health()
            if doc and check(doc):
                return doc
            assert self.proc is not None and self.proc.returncode is None, (
                f"{self.config.stem} exited: {self.log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, (
                f"{self.config.stem}: {what} not within {timeout} s; last health {doc}; "
                f"log: {self.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def device_up(doc: dict[str, Any]) -> bool:
    return bool(doc["devices"]) and doc["devices"][0]["state"] == "connected"


async def produce(srv: UaServer, stop: asyncio.Event) -> None:
    """Both machines change every 200 ms; every write is recorded by the server helper."""
    tick = 0
    while not stop.is_set():
        for offset, device in enumerate(("A", "B")):
            await srv.write(f"{device}.Speed", 1000.0 + tick * 0.5 + offset)
            await srv.write(f"{device}.Count", tick)
            if tick % 10 == 0:
                await srv.write(f"{device}.Mode", (tick // 10) % 3)
            if tick % 5 == 0:
                await srv.write(f"{device}.Running", (tick // 5) % 2 == 0)
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)


def expected_sample(name: str, value: Any, ts: int) -> tuple[str, str, int, Any]:
    device, variable = name.split(".")
    if variable == "Speed":
        return device, "Spindle/Speed", ts, float(value)
    if variable == "Count":
        return device, "Production/PartCount", ts, float(value)
    if variable == "Mode":
        return device, "State/Mode", ts, MODE_CODES[value]
    return device, "Running", ts, bool(value)


async def stored(database_url: str, group: str) -> list[tuple[str, str, int, Any]]:
    query = """
        SELECT s.device_id, s.metric, t.ts, t.value::text, 'num' FROM series s
          JOIN sample_num t ON t.series_id = s.id WHERE s.group_id = %(g)s
        UNION ALL SELECT s.device_id, s.metric, t.ts, t.value::text, 'text' FROM series s
          JOIN sample_text t ON t.series_id = s.id WHERE s.group_id = %(g)s
        UNION ALL SELECT s.device_id, s.metric, t.ts, t.value::text, 'bool' FROM series s
          JOIN sample_bool t ON t.series_id = s.id WHERE s.group_id = %(g)s
    """
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute(query, {"g": group})).fetchall()
    out = []
    for device, metric, ts, value, kind in rows:
        ts_ms = round(ts.timestamp() * 1000)
        if kind == "num":
            value = float(value)
        elif kind == "bool":
            value = value == "true"
        out.append((device, metric, ts_ms, value))
    return out


@contextlib.asynccontextmanager
async def ingest(database_url: str, mqtt_url: str, host: str) -> AsyncIterator[IngestWorker]:
    settings = PlatformSettings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        host_id=host,
        batch_age_ms=50,
        unregistered_nodes="admit",  # no registry here: the gateway under test is unknown
    )
    worker = IngestWorker(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 15)
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.mark.long  # a minute and more of outages: after the main suite (.ci/run)
async def test_broker_outage_and_gateway_kill_lose_nothing(
    private_mosquitto: MosquittoProcess, database_url: str, unique: str, tmp_path: Path
) -> None:
    broker = private_mosquitto
    group, host = f"OUT{unique}", f"h{unique}"
    variables = {
        f"{d}.{v}": (t, z)
        for d in ("A", "B")
        for v, t, z in (
            ("Speed", ua.VariantType.Double, 0.0),
            ("Count", ua.VariantType.UInt32, 0),
            ("Mode", ua.VariantType.Int32, 0),
            ("Running", ua.VariantType.Boolean, False),
        )
    }
    restarted: MosquittoProcess | None = None
    producing = asyncio.Event()
    async with (
        ua_server(variables, uri=f"urn:plantwire:test:{unique}") as srv,
        ingest(database_url, broker.url, host),
    ):
        producer = asyncio.create_task(produce(srv, producing))
        ports = {"GWA": free_port(), "GWB": free_port()}
        gw = {
            name: GatewayProcess(
                gateway_toml(tmp_path, name, device, srv, broker.url, host, group, ports[name]),
                ports[name],
                tmp_path / f"{name}.log",
            )
            for name, device in (("GWA", "A"), ("GWB", "B"))
        }
        try:
            for g in gw.values():
                await g.start()
            for g in gw.values():
                await g.wait("connected and publishing", lambda d: d["status"] == "ok", 60)
            window_start = now_ms()
            await asyncio.sleep(2)

            broker.stop()
            outage = time.monotonic()
            await asyncio.sleep(KILL_AT_S)
            before_kill = await gw["GWB"].health()
            gw["GWB"].kill()
            kill_ms = now_ms()
            await asyncio.sleep(RESTART_AT_S - (time.monotonic() - outage))
            await gw["GWB"].start()
            await gw["GWB"].wait("device reconnected while the broker is down", device_up)
            back_ms = now_ms()
            held = {n: (await g.health())["buffer"]["depth_values"] for n, g in gw.items()}
            await asyncio.sleep(OUTAGE_S - (time.monotonic() - outage))
            restarted = start_mosquitto(broker.log_path.parent, port=broker.port)

            for g in gw.values():
                await g.wait("back online", lambda d: d["status"] == "ok", 40)
            window_end = now_ms()
            for g in gw.values():
                await g.wait("backlog acknowledged", lambda d: d["buffer"]["depth_values"] == 0, 40)
            producing.set()
            await producer

            def wanted(row: tuple[str, str, int, Any]) -> bool:
                device, _, ts, _ = row
                if not window_start <= ts <= window_end:
                    return False
                return device == "A" or ts <= kill_ms - MARGIN_MS or ts >= back_ms + MARGIN_MS

            expected = Counter(r for r in (expected_sample(*w) for w in srv.written) if wanted(r))
            deadline = time.monotonic() + 30
            while True:
                actual = Counter(r for r in await stored(database_url, group) if wanted(r))
                if actual == expected or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            producing.set()
            for g in gw.values():
                await g.stop()
            if restarted is not None:
                restarted.stop()

    # the outage really held data, in both gateways, and B's held data predates its death
    assert before_kill["buffer"]["depth_values"] > 150, before_kill  # ~11 values/s for 20 s
    assert held["GWA"] > 250 and held["GWB"] > 0, held
    per_device = Counter(r[0] for r in expected.elements())
    assert per_device["A"] > 600 and per_device["B"] > 400, per_device
    outage_b = [r for r in expected if r[0] == "B" and r[2] > window_start + 2_000]
    assert any(r[2] < kill_ms - MARGIN_MS for r in outage_b)  # buffered before the kill
    missing = expected - actual
    extra = actual - expected
    assert not missing, f"{sum(missing.values())} samples lost, e.g. {list(missing)[:5]}"
    assert not extra, f"{sum(extra.values())} samples not in the truth, e.g. {list(extra)[:5]}"
    assert max(actual.values()) == 1
