"""Nothing lost, end to end: a real asyncua server, the gateway with a durable buffer, a real
Mosquitto, the ingest and PostgreSQL; counted against the values the server wrote."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asyncua import ua

from plantwire_bus.mosquitto import free_port
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.topics import encode_state, state_topic
from plantwire_edge import opcua
from plantwire_edge.config import EdgeConfig, parse_config
from plantwire_edge.opcua_session import connect
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

from .conftest import EPOCH, UaServer, http_get, running, ua_server


def gateway_config_text(
    srv: UaServer, tmp: Path, mqtt_url: str, group: str, host: str | None, **extra: Any
) -> str:
    lines = [
        f'group_id = "{group}"',
        'edge_node_id = "GW"',
        f'mqtt_url = "{mqtt_url}"',
        f'primary_host_id = "{host or ""}"',
        "batch_ms = 50",
        *(f"{k} = {v}" for k, v in extra.items() if k != "http"),
        "[buffer]",
        f'path = "{tmp / "buffer.db"}"',
        "[[devices]]",
        'kind = "opcua"',
        'device_id = "M1"',
        f'endpoint = "{srv.endpoint}"',
        "publishing_interval_ms = 50",
    ]
    if "http" in extra:
        lines[lines.index("[buffer]") : lines.index("[buffer]")] = [
            "[http]",
            f'listen = "127.0.0.1:{extra["http"]}"',
        ]
    for name in srv.nodes:
        lines += ["[[devices.tags]]", f'node = "{srv.address(name)}"', f'metric = "{name}"']
    return "\n".join(lines)


def gateway_config(
    srv: UaServer, tmp: Path, mqtt_url: str, group: str, host: str | None, **extra: Any
) -> EdgeConfig:
    return parse_config(gateway_config_text(srv, tmp, mqtt_url, group, host, **extra))


@asynccontextmanager
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


async def wait_values(
    database_url: str, group: str, wanted: set[tuple[str, int, float]], timeout: float
) -> None:
    """Until every value of ``wanted`` is stored (or ``timeout`` seconds passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted <= set(await stored_values(database_url, group)):
            return
        await asyncio.sleep(0.1)


def stamped(values: list[tuple[int, float]]) -> list[tuple[str, int, float]]:
    """(``V``, µs, value) as stored for V's ``values`` (source ms, value), delivered in this
    order: the n-th value of a millisecond n µs after it."""
    ordinal: dict[int, int] = {}
    out = []
    for ms, value in values:
        n = ordinal[ms] = ordinal.get(ms, -1) + 1
        out.append(("V", ms * 1000 + n, value))
    return out


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


async def write_values(srv: UaServer, name: str, count: int, start: float = 0.0) -> None:
    for i in range(count):
        await srv.write(name, start + i + 0.5)
        await asyncio.sleep(0.03)


async def test_buffer_keeps_values_until_the_host_committed_them(
    tmp_path: Path, mqtt_url: str, database_url: str, group: str, unique: str
) -> None:
    """A host that announces commit confirmations but stores nothing (frozen, or its broker
    session lost the messages): the gateway keeps every PUBACKed value in its buffer and sends
    it again; once a real ingest runs, every value is stored once and the buffer empties."""
    host = f"h{unique}"
    async with (
        ua_server({"V": (ua.VariantType.Double, 0.0)}) as srv,
        MqttClient(parse_mqtt_url(mqtt_url), f"fake-{unique}") as fake,
    ):
        await fake.publish(state_topic(host), encode_state(True, now_ms(), True), retain=True)
        config = gateway_config(srv, tmp_path, mqtt_url, group, host, commit_timeout_s=1.0)
        async with running(config) as gateway:
            node = gateway.node
            await asyncio.wait_for(gateway.adapters[0].connected.wait(), 20)
            await write_values(srv, "V", 30)
            buffered = node.buffer.stats
            await until(  # every value written in the buffer and acknowledged by the broker
                lambda: buffered.stored_values > 30 and node.stats.values_acked >= 30,
                "PUBACK of every value",
            )
            assert node.host_commits
            assert buffered.acked_values == 0  # none released: all still in the buffer
            assert buffered.depth_values == buffered.stored_values
            await until(lambda: node.stats.commit_timeouts > 0, "a resend")
            assert node.stats.values_committed == 0
            async with ingest(database_url, mqtt_url, host):
                await until(lambda: node.buffer.stats.depth_values == 0, "buffer emptied", 40)
                assert node.stats.values_committed >= 30
        await fake.publish(state_topic(host), b"", retain=True)
    stored = await stored_values(database_url, group)
    written = [(name, ts * 1000, value) for name, value, ts in srv.written]
    assert sorted(v for v in stored if v[1] >= written[0][1]) == sorted(written)


async def test_third_party_host_gets_every_value_with_puback_release(
    tmp_path: Path, mqtt_url: str, group: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An independent Sparkplug host (pysparkplug) that knows nothing of commit
    confirmations: the gateway says it releases values on the broker's PUBACK (log and
    /metrics), empties its buffer that way, and the host receives every value written."""
    import pysparkplug as sp

    host = f"h{unique}"
    received: list[tuple[Any, Any, Any]] = []
    births: dict[str, Any] = {}

    async def third_party_host(client: MqttClient) -> None:
        """pysparkplug decodes births and data (its own client does not run on paho 2)."""
        async for message in client.messages():
            kind, device = message.topic.split("/")[2], message.topic.split("/")[-1]
            if kind == "DBIRTH":
                births[device] = sp.DBirth.decode(message.payload)
            elif kind == "DDATA":
                data = sp.DData.decode(message.payload, birth=births[device])
                received.extend((m.name, m.timestamp, m.value) for m in data.metrics)

    online = sp.State(timestamp=now_ms(), online=True).encode()
    port = free_port()
    async with (
        MqttClient(parse_mqtt_url(mqtt_url), f"third-{unique}") as client,
        ua_server({"V": (ua.VariantType.Double, 0.0)}) as srv,
    ):
        await client.subscribe(f"spBv1.0/{group}/+/+/+")
        await client.publish(state_topic(host), online, retain=True)
        listener = asyncio.create_task(third_party_host(client))
        config = gateway_config(srv, tmp_path, mqtt_url, group, host, http=port)
        with caplog.at_level(logging.INFO, logger="plantwire_edge.node"):
            async with running(config) as gateway:
                node = gateway.node
                await asyncio.wait_for(gateway.adapters[0].connected.wait(), 20)
                await until(lambda: node.stats.births > 0, "births")
                await asyncio.sleep(0.3)
                srv.written.clear()
                await write_values(srv, "V", 40)
                await until(lambda: len(received) >= 40, "every value at the host")
                await until(lambda: node.buffer.stats.depth_values == 0, "buffer emptied")
                _, metrics = await http_get(port, "/metrics")
        listener.cancel()
        await client.publish(state_topic(host), b"", retain=True)
    assert "plantwire_edge_host_confirms_commits 0.0" in metrics
    assert not node.host_commits and node.stats.values_committed == 0
    assert any("does not confirm commits" in r.getMessage() for r in caplog.records)
    written = sorted(("V", ts, value) for _, value, ts in srv.written)
    assert sorted(v for v in received if v[1] >= written[0][1]) == written


async def until(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


PLANTWIRE = Path(sys.executable).with_name("plantwire")


async def test_gateway_killed_and_restarted_recovers_the_servers_queue(
    tmp_path: Path, mqtt_url: str, database_url: str, group: str, unique: str
) -> None:
    """``plantwire edge run`` is killed with SIGKILL while the machine keeps writing, and
    started again 3 s later: the new process takes the old subscription over and gets every
    value the server queued meanwhile, so PostgreSQL ends up with every value written, even
    those written while no gateway process existed, each once."""
    host = f"h{unique}"
    port = free_port()
    async with (
        ua_server({"V": (ua.VariantType.Double, 0.0)}) as srv,
        ingest(database_url, mqtt_url, host),
    ):
        config = tmp_path / "gateway.toml"
        toml = gateway_config_text(srv, tmp_path, mqtt_url, group, host, http=port)
        config.write_text(toml)
        log = (tmp_path / "gateway.log").open("ab")

        async def start() -> asyncio.subprocess.Process:
            proc = await asyncio.create_subprocess_exec(
                str(PLANTWIRE), "edge", "run", str(config), stdout=log, stderr=log
            )
            deadline = time.monotonic() + 30
            while True:
                assert time.monotonic() < deadline, "gateway did not connect"
                with contextlib.suppress(OSError, ValueError, IndexError):
                    _, body = await http_get(port, "/healthz")
                    if json.loads(body)["devices"][0]["state"] == "connected":
                        return proc
                await asyncio.sleep(0.1)

        proc = await start()
        await asyncio.sleep(1)
        writer = asyncio.create_task(write_values(srv, "V", 400, start=1000.0))  # ~12 s
        await asyncio.sleep(3)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await asyncio.sleep(3)  # the server keeps writing into the subscription's queue
        proc = await start()
        await writer
        await wait_stored(database_url, group, 400, timeout=30)
        await asyncio.sleep(1)
        _, metrics = await http_get(port, "/metrics")
        proc.terminate()
        await proc.wait()
    stored = await stored_values(database_url, group)
    written = [("V", ts * 1000, value) for _, value, ts in srv.written]
    assert [v for v in stored if v[1] >= written[0][1]] == written
    assert 'plantwire_edge_adapter_recovered_subscriptions_total{device="M1",kind="opcua"} 1.0' in (
        metrics
    )


@pytest.mark.parametrize("backfill", [True, False], ids=["history", "no-history-read"])
async def test_values_written_before_a_new_subscription_come_from_the_servers_history(
    tmp_path: Path,
    mqtt_url: str,
    database_url: str,
    group: str,
    unique: str,
    backfill: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server restarts (its subscriptions die with it) and writes twenty values before the
    gateway may connect again: with the server's history read, every value the server held
    (its initial value included) is stored once, in PostgreSQL; without it (the control), the
    restarted server's values are lost but the newest: all a new subscription alone can see.

    A restarted server's initial value is stamped when its variable is created, often in the
    millisecond of the first value written after it (1 start in 4 here): both are stored, the
    second as that millisecond's value 1 (1 µs after it), as any same-millisecond pair is. The
    test writes its first value in that millisecond always."""
    host = f"h{unique}"
    reconnect = asyncio.Event()  # the gateway's next connection waits for this
    reconnect.set()

    async def connect_when_allowed(*args: Any) -> Any:
        await reconnect.wait()
        return await connect(*args)

    monkeypatch.setattr(opcua, "connect", connect_when_allowed)
    port = free_port()
    variables = {"V": (ua.VariantType.Double, -1.0)}
    held: list[tuple[int, float]] = []  # (source ms, value), in the order the servers had them

    async def initial(srv: UaServer) -> tuple[int, float]:
        dv = await srv.nodes["V"].read_data_value()
        held.append(((dv.SourceTimestamp - EPOCH) // timedelta(milliseconds=1), dv.Value.Value))
        return held[-1]

    async def write(srv: UaServer, value: float, ts_ms: int | None = None) -> None:
        held.append((await srv.write("V", value, ts_ms), value))

    first = contextlib.AsyncExitStack()
    srv = await first.enter_async_context(ua_server(variables, port=port, historize=True))
    await initial(srv)
    text = gateway_config_text(srv, tmp_path, mqtt_url, group, host)
    text = text.replace(
        "publishing_interval_ms = 50",
        f"publishing_interval_ms = 50\nhistory_backfill = {str(backfill).lower()}",
    )
    async with ingest(database_url, mqtt_url, host), running(parse_config(text)) as gateway:
        adapter = gateway.adapters[0]
        await asyncio.wait_for(adapter.connected.wait(), 20)
        for i in range(10):
            await write(srv, float(i))
            await asyncio.sleep(0.03)
        assert await wait_stored(database_url, group, 11) >= 11  # with the initial -1.0
        reconnect.clear()
        await first.aclose()
        for _ in range(100):  # the gateway noticed: the device is offline
            if not adapter.connected.is_set():
                break
            await asyncio.sleep(0.05)
        async with ua_server(variables, port=port, historize=True) as again:
            restarted = await initial(again)
            gap = [float(i) for i in range(10, 30)]
            # before the gateway may connect; asyncua's history keeps every value (its
            # monitored item's queue has the server's maximum size), each in its millisecond
            # but the first, always in the restarted server's initial value's one
            for value in gap:
                await write(again, value, restarted[0] if value == gap[0] else None)
                await asyncio.sleep(0.012)
            reconnect.set()
            await asyncio.wait_for(adapter.connected.wait(), 20)
            for i in range(30, 40):
                await write(again, float(i))
                await asyncio.sleep(0.03)
            lost = [] if backfill else [restarted] + [h for h in held if h[1] in gap[:-1]]
            expected = stamped([h for h in held if h not in lost])
            await wait_values(database_url, group, set(expected), timeout=20)
            await asyncio.sleep(0.5)  # anything doubled would have arrived by now
            stored = await stored_values(database_url, group)
    assert stored == expected, f"held by the servers (ms, value): {held}"
    if backfill:
        assert adapter.status.backfilled >= len(gap) + 1
