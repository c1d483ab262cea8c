"""Helpers for the edge tests: a Sparkplug probe on a real broker, real asyncua servers and a
relay that holds back what a broker sends."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from asyncua import ua
from asyncua.server.server import Server

from plantwire_bus.mosquitto import free_port
from plantwire_bus.mqtt import Message, MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Payload, coerce, decode_payload
from plantwire_bus.timeline import TimeLine

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Seen:
    """One metric value as a Sparkplug host would store it."""

    kind: str  # DBIRTH | DDATA
    device: str
    metric: str
    value: Any
    ts: int
    historical: bool


@dataclass
class Probe:
    """Everything published under one Sparkplug group, decoded with the project codec."""

    client: MqttClient
    messages: list[Message] = field(default_factory=list)

    def payloads(self, kind: str, device: str | None = None) -> list[Payload]:
        out = []
        for m in self.messages:
            parts = m.topic.split("/")
            if parts[2] == kind and (device is None or parts[-1] == device):
                out.append(decode_payload(m.payload))
        return out

    async def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what} not seen within {timeout} s"
            await asyncio.sleep(0.05)

    def count(self, kind: str) -> int:
        return sum(m.topic.split("/")[2] == kind for m in self.messages)

    def values(self) -> list[Seen]:
        """Birth and data values in arrival order, aliases resolved against the births."""
        aliases: dict[tuple[str, int], tuple[str, DataType]] = {}
        out: list[Seen] = []
        for m in self.messages:
            parts = m.topic.split("/")
            kind = parts[2]
            if kind not in ("DBIRTH", "DDATA"):
                continue
            device = parts[-1]
            for metric in decode_payload(m.payload).metrics:
                if kind == "DBIRTH":
                    assert metric.name is not None and metric.datatype is not None
                    assert metric.alias is not None
                    aliases[(device, metric.alias)] = (metric.name, metric.datatype)
                assert metric.alias is not None and metric.timestamp is not None
                name, datatype = aliases[(device, metric.alias)]
                value = None if metric.is_null else coerce(metric.value, datatype)
                out.append(Seen(kind, device, name, value, metric.timestamp, metric.is_historical))
        return out

    def seqs(self) -> list[int]:
        return [
            decode_payload(m.payload).seq or 0
            for m in self.messages
            if m.topic.split("/")[2] not in ("NDEATH", "NCMD")
        ]


def unresolved(probe: Probe, device: str) -> list[str]:
    """DDATA of ``device`` with an alias missing from the birth a host resolves it against:
    the newest DBIRTH stamped no later than the DDATA's payload timestamp (by its timestamp,
    not its arrival). Also: DDATA with an alias missing from the last DBIRTH received."""
    births: list[tuple[int, set[int]]] = []  # (timestamp, aliases), by timestamp
    last: set[int] | None = None
    out: list[str] = []
    for m in probe.messages:
        parts = m.topic.split("/")
        if parts[-1] != device:
            continue
        payload = decode_payload(m.payload)
        ts = payload.timestamp or 0
        if parts[2] == "DBIRTH":
            last = {x.alias for x in payload.metrics if x.alias is not None}
            bisect.insort(births, (ts, last), key=lambda b: b[0])
        elif parts[2] == "DDATA":
            aliases = {x.alias for x in payload.metrics if x.alias is not None}
            if last is None or not aliases <= last:
                out.append(f"DDATA {sorted(aliases)} after DBIRTH {sorted(last or ())}")
            found = [b for b in births if b[0] <= ts]
            if not found or not aliases <= found[-1][1]:
                got = sorted(found[-1][1]) if found else None
                out.append(f"DDATA at {ts} {sorted(aliases)}: birth in force has {got}")
    return out


@asynccontextmanager
async def probe_on(mqtt_url: str, group: str) -> AsyncIterator[Probe]:
    client = MqttClient(parse_mqtt_url(mqtt_url), f"probe-{group}-{time.monotonic_ns()}")
    await client.connect()
    await client.subscribe(f"spBv1.0/{group}/#")
    probe = Probe(client)

    async def collect() -> None:
        async for message in client.messages():
            probe.messages.append(message)

    task = asyncio.create_task(collect())
    try:
        yield probe
    finally:
        task.cancel()
        await client.disconnect()


def ms_to_dt(ts_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ts_ms)


@dataclass
class UaServer:
    """A running asyncua server with variables under one object; writes are recorded."""

    server: Server
    endpoint: str
    port: int
    uri: str
    nodes: dict[str, Any]
    types: dict[str, ua.VariantType]
    written: list[tuple[str, Any, int]] = field(default_factory=list)

    def address(self, name: str) -> str:
        return f"nsu={self.uri};s={name}"

    async def write(self, name: str, value: Any, ts_ms: int | None = None) -> int:
        ts = ts_ms if ts_ms is not None else time.time_ns() // 1_000_000
        when = cast(ua.DateTime, ms_to_dt(ts))
        dv = ua.DataValue(
            ua.Variant(value, self.types[name]), SourceTimestamp=when, ServerTimestamp=when
        )
        await self.server.write_attribute_value(self.nodes[name].nodeid, dv)
        self.written.append((name, value, ts))
        return ts


@asynccontextmanager
async def ua_server(
    variables: dict[str, tuple[ua.VariantType, Any]],
    *,
    port: int | None = None,
    uri: str = "urn:plantwire:test",
    setup: Callable[[Server], Any] | None = None,
    user_manager: Any = None,
    historize: bool = False,
) -> AsyncIterator[UaServer]:
    """Serve ``variables`` (name -> (type, initial value)) as ``ns=<uri>;s=<name>``;
    ``historize``: the server keeps every value in its history (HistoryRead). Without a
    ``port``, a free one; taken meanwhile by another test's process, the next one."""
    for attempt in range(5):
        chosen = port or free_port()
        try:
            started = await _start_ua_server(variables, chosen, uri, setup, user_manager, historize)
            break
        except OSError as exc:
            if port is not None or exc.errno != errno.EADDRINUSE or attempt == 4:
                raise
    try:
        yield started
    finally:
        await started.server.stop()


async def _start_ua_server(
    variables: dict[str, tuple[ua.VariantType, Any]],
    port: int,
    uri: str,
    setup: Callable[[Server], Any] | None,
    user_manager: Any,
    historize: bool,
) -> UaServer:
    endpoint = f"opc.tcp://127.0.0.1:{port}/test"
    server = Server(user_manager=user_manager)
    await server.init()
    server.set_endpoint(endpoint)
    if setup is not None:
        result = setup(server)
        if asyncio.iscoroutine(result):
            await result
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(uri)
    obj = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("Machine"), ua.Int16(idx)), ua.QualifiedName("Machine", idx)
    )
    nodes, types = {}, {}
    for name, (vtype, initial) in variables.items():
        nodes[name] = await obj.add_variable(
            ua.NodeId(ua.String(name), ua.Int16(idx)),
            ua.QualifiedName(name, idx),
            ua.Variant(initial, vtype),
        )
        types[name] = vtype
    await server.start()
    if historize:
        for node in nodes.values():
            await server.historize_node_data_change(node, timedelta(days=1))
    return UaServer(server, endpoint, port, uri, nodes, types)


@pytest.fixture
def group(unique: str) -> str:
    return f"EDGE{unique}"


async def http_get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path; returns status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


@asynccontextmanager
async def running(config: Any, clock: Any = None) -> AsyncIterator[Any]:
    """A gateway (plantwire_edge.gateway.Gateway) running in this event loop (on ``clock``,
    default the wall clock)."""
    from plantwire_edge.gateway import Gateway

    gateway = Gateway(config, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


class HeldRelay:
    """A TCP relay to the broker whose broker-to-client direction can be held (its bytes kept
    back, then passed on in order): a gateway that falls behind what its broker sent."""

    def __init__(self, broker_url: str) -> None:
        self.broker = parse_mqtt_url(broker_url)
        self.broker_url = broker_url
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        parts = urlsplit(self.broker_url)
        auth = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}" if auth else
                                         f"127.0.0.1:{port}"))  # fmt: skip

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.flowing.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if held:
                        await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))


class LineClock:
    """A gateway clock following a simulator's time line, which the test replaces."""

    def __init__(self, line: TimeLine) -> None:
        self.line = line

    @property
    def speed(self) -> float:
        return self.line.speed

    def now_ms(self) -> int:
        return self.line.at(time.time())
