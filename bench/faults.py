"""Faults from OPC UA server to committed row: every value counted against the server that wrote it.

    .venv/bin/python bench/faults.py [--only NAME[,NAME]] [--seconds 30] [--variables 100]
                                     [--cpu-load 2]

Each fault runs on a rig of its own, all real processes: counting asyncua server(s) that log
every value they write, ``plantwire edge run`` with a durable buffer, a private Mosquitto,
``plantwire platform ingest`` and a fresh PostgreSQL database. While the servers produce for
``--seconds``, the fault is applied; then the rig drains and the values stored in PostgreSQL
are compared with what the servers wrote in the window, per (metric, millisecond, value):

    produced  values the servers wrote in the window
    stored    distinct values found in PostgreSQL for them
    lost      produced, not stored, and published by the server (or kept in its history)
    unseen    produced, not stored, and never published by the server nor kept in a history
              it still has: written by a server killed before its next publish, or written
              by a server without history while no subscription watched the variable. No
              client can ever have received them (the restart rows' servers log every value
              they publish to tell them apart)
    doubled   stored more often than produced (or stored but never produced)

Faults (issue 13's table): none (baseline); a CPU-starved server (1,000 variables, both cores
kept busy by CPU-bound processes this bench starts); several servers at a high total rate;
bursts of 5 writes within one millisecond; the gateway killed with SIGKILL during a broker
outage and restarted; the OPC UA server paused 20 s (SIGSTOP/SIGCONT); the OPC UA server
restarted (a planned restart: it stops writing, publishes what it queued and exits) and
killed (SIGKILL), each with and without history; the ingest frozen while the broker is
killed; PostgreSQL refusing connections. ``--cpu-load`` keeps the cores busy for every fault.
Every port (servers, broker, the gateway's HTTP) is held by the bench from the start (see
``plantwire_bus.mosquitto.reserve_port``): a restarted server or broker gets its port back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

URI = "urn:plantwire:faults"
HERE = Path(__file__).resolve()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HZ = os.sysconf("SC_CLK_TCK")
ADMIN_URL = os.environ.get(
    "PLANTWIRE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PLANTWIRE = str(Path(sys.executable).with_name("plantwire"))
BURST = 5  # writes of the burst variable within one millisecond, once a second


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def value_of(ts: int, i: int) -> float:
    """The value variable ``i`` gets at ``ts``: exact in a double, unique per (ts, i)."""
    return float((ts % 1_000_000_000) * 10_000 + i)


# -- the counting OPC UA server process -----------------------------------------------------
def log_published(path: Path) -> None:
    """Log every value this server process publishes, as ``ms value`` lines, when its Publish
    response is handed to the connection (on loopback, in the gateway's socket from then on):
    a value that was written but never published died with a killed server, or was written
    while no subscription watched it; no client can ever have seen it."""
    from asyncua import ua
    from asyncua.server.uaprocessor import UaProcessor

    out = path.open("a")
    forward = UaProcessor.forward_publish_response

    async def logged(self: Any, result: ua.PublishResult, requestdata: Any) -> None:
        if self._transport is None or self._transport.is_closing():
            await forward(self, result, requestdata)
            return  # nothing goes out
        await forward(self, result, requestdata)
        lines = []
        for notification in result.NotificationMessage.NotificationData:
            for item in getattr(notification, "MonitoredItems", ()):
                dv = item.Value
                if dv.SourceTimestamp is not None and dv.Value is not None:
                    ms = (dv.SourceTimestamp.replace(tzinfo=UTC) - EPOCH) // timedelta(
                        milliseconds=1
                    )
                    lines.append(f"{ms} {dv.Value.Value!r}\n")
        out.writelines(lines)
        out.flush()

    UaProcessor.forward_publish_response = logged  # type: ignore[method-assign]


def published(path: Path) -> set[tuple[int, float]]:
    if not path.exists():
        return set()
    return {
        (int(ts), float(value))
        for ts, value in (line.split() for line in path.read_text().splitlines())
    }


async def serve(
    port: int,
    variables: int,
    interval_ms: int,
    truth: Path,
    burst: bool,
    history: bool,
    watched: bool,
) -> None:
    from asyncua import ua
    from asyncua.server.server import Server

    if watched:
        log_published(truth.with_suffix(".published"))

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/faults")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(URI)
    obj = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("Faults"), ua.Int16(idx)), ua.QualifiedName("Faults", idx)
    )
    names = [f"V{i:04d}" for i in range(variables)] + (["B"] if burst else [])
    ids = []
    for name in names:
        node = await obj.add_variable(
            ua.NodeId(ua.String(name), ua.Int16(idx)), ua.QualifiedName(name, idx), 0.0
        )
        ids.append(node.nodeid)
    # the first values are written before anyone can connect, so that a variable's value
    # before its first write (0.0, stamped when it was made) is never reported
    with truth.open("a") as out:
        ts = now_ms()
        stamp = cast(ua.DateTime, EPOCH + timedelta(milliseconds=ts))
        for i, nodeid in enumerate(ids[:variables]):
            dv = ua.DataValue(
                ua.Variant(value_of(ts, i), ua.VariantType.Double),
                SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
            await server.write_attribute_value(nodeid, dv)
        out.write(f"{ts} {variables} 0\n")
    await server.start()
    if history:  # every value kept, for HistoryRead (asyncua's in-memory history)
        for nodeid in ids:
            await server.historize_node_data_change(server.get_node(nodeid), timedelta(days=1))
    idle = asyncio.Event()  # SIGUSR1: stop writing, keep serving what is queued
    ending = asyncio.Event()  # SIGTERM: stop writing, publish what is queued, exit
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, idle.set)
    loop.add_signal_handler(signal.SIGTERM, stop_writing, idle, ending)
    print("ready", flush=True)
    await write(server, ids, variables, interval_ms, truth, burst, idle)
    await ending.wait()
    # a graceful stop: every subscription publishes what it queued before the server goes
    subscriptions = server.iserver.subscription_service.subscriptions
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        sub._triggered_datachanges for sub in subscriptions.values()
    ):
        await asyncio.sleep(interval_ms / 1000 / 4)
    await server.stop()


def stop_writing(*events: asyncio.Event) -> None:
    for event in events:
        event.set()


async def write(
    server: Any,
    ids: list[Any],
    variables: int,
    interval_ms: int,
    truth: Path,
    burst: bool,
    idle: asyncio.Event,
) -> None:
    """Write every variable each interval (and a burst once a second) until ``idle``."""
    from asyncua import ua

    with truth.open("a") as out:
        due = time.monotonic()
        last_burst = 0.0
        while not idle.is_set():
            ts = now_ms()
            stamp = cast(ua.DateTime, EPOCH + timedelta(milliseconds=ts))
            for i in range(variables):
                dv = ua.DataValue(
                    ua.Variant(value_of(ts, i), ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                await server.write_attribute_value(ids[i], dv)
            writes = 0
            if burst and time.monotonic() - last_burst >= 1.0:
                last_burst = time.monotonic()
                for j in range(BURST):
                    dv = ua.DataValue(
                        ua.Variant(value_of(ts, j), ua.VariantType.Double),
                        SourceTimestamp=stamp,
                        ServerTimestamp=stamp,
                    )
                    await server.write_attribute_value(ids[-1], dv)
                writes = BURST
            out.write(f"{ts} {variables} {writes}\n")
            out.flush()
            due += interval_ms / 1000
            await asyncio.sleep(max(0.0, due - time.monotonic()))


def produced(truth: Path, start: int, end: int) -> Counter[tuple[str, int, float]]:
    made: Counter[tuple[str, int, float]] = Counter()
    for line in truth.read_text().splitlines():
        ts_text, n_text, burst_text = line.split()
        ts = int(ts_text)
        if start <= ts < end:
            for i in range(int(n_text)):
                made[(f"V{i:04d}", ts, value_of(ts, i))] += 1
            for j in range(int(burst_text)):
                made[("B", ts, value_of(ts, j))] += 1
    return made


# -- the rig ---------------------------------------------------------------------------------
@dataclass
class Server:
    held: socket.socket  # its port, held for the whole rig (see reserve_port)
    truth: Path
    variables: int
    burst: bool
    history: bool = False
    watched: bool = False  # it logs every value it publishes (truth.published)
    proc: asyncio.subprocess.Process | None = None

    @property
    def port(self) -> int:
        port: int = self.held.getsockname()[1]
        return port

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/faults"

    async def start(self, interval_ms: int) -> None:
        with self.truth.with_suffix(".log").open("ab") as log:  # asyncua's complaints
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE), "serve", str(self.port), str(self.variables),
                str(interval_ms), str(self.truth), "1" if self.burst else "0",
                "1" if self.history else "0", "1" if self.watched else "0",
                stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        assert self.proc.stdout is not None
        if not await self.proc.stdout.readline():
            raise RuntimeError(f"the OPC UA server on port {self.port} did not start")


@dataclass
class Rig:
    tmp: Path
    interval_ms: int
    servers: list[Server]
    group: str = field(default_factory=lambda: f"F{uuid.uuid4().hex[:8]}")
    host: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:6]}")
    db_name: str = field(default_factory=lambda: f"plantwire_faults_{uuid.uuid4().hex[:8]}")
    db_url: str = ""
    broker: Any = None
    held: list[socket.socket] = field(default_factory=list)  # the broker's and HTTP ports
    ingest: asyncio.subprocess.Process | None = None
    gateway: asyncio.subprocess.Process | None = None
    http: int = 0
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    killed_at: list[int] = field(default_factory=list)  # when a server was SIGKILLed (ms)

    async def up(self) -> None:
        from plantwire_bus.mosquitto import reserve_port, start_mosquitto
        from plantwire_platform import services
        from plantwire_platform.database import migrate

        self.db_url = services.ensure_database(ADMIN_URL, self.db_name, fresh=True)
        await migrate(self.db_url)
        self.held = [reserve_port(), reserve_port()]
        self.broker = start_mosquitto(self.tmp / "mosquitto", port=self.broker_port)
        for server in self.servers:
            await server.start(self.interval_ms)
        await self.start_ingest()
        self.http = self.held[1].getsockname()[1]
        await self.start_gateway()

    @property
    def broker_port(self) -> int:
        port: int = self.held[0].getsockname()[1]
        return port

    async def start_ingest(self) -> None:
        env = dict(os.environ, DATABASE_URL=self.db_url, MQTT_URL=self.broker.url,
                   PLANTWIRE_HOST_ID=self.host, PLANTWIRE_PACK_AFTER_DAYS="none",
                   PLANTWIRE_UNREGISTERED_NODES="admit")  # no registry here  # fmt: skip
        log = (self.tmp / "ingest.log").open("ab")
        self.ingest = await asyncio.create_subprocess_exec(
            PLANTWIRE, "platform", "ingest", env=env, stdout=log, stderr=log
        )
        self.procs.append(self.ingest)

    async def start_gateway(self) -> None:
        config = self.tmp / "gateway.toml"
        lines = [
            f'group_id = "{self.group}"', 'edge_node_id = "GW"',
            f'mqtt_url = "{self.broker.url}"',
            f'primary_host_id = "{self.host}"', "batch_ms = 100",
            "[buffer]", f'path = "{self.tmp / "buffer.db"}"',
            "[http]", f'listen = "127.0.0.1:{self.http}"',
        ]  # fmt: skip
        for k, server in enumerate(self.servers):
            lines += ["[[devices]]", 'kind = "opcua"', f'device_id = "M{k}"',
                      f'endpoint = "{server.endpoint}"',
                      f"publishing_interval_ms = {self.interval_ms}"]  # fmt: skip
            names = [f"V{i:04d}" for i in range(server.variables)] + (["B"] if server.burst else [])
            for name in names:
                lines += ["[[devices.tags]]", f'node = "nsu={URI};s={name}"', f'metric = "{name}"']
        config.write_text("\n".join(lines) + "\n")
        log = (self.tmp / "gateway.log").open("ab")
        self.gateway = await asyncio.create_subprocess_exec(
            PLANTWIRE, "--log-level", "INFO", "edge", "run", str(config), stdout=log, stderr=log
        )
        self.procs.append(self.gateway)
        await self.wait_health(lambda d: all(x["state"] == "connected" for x in d["devices"]), 60)

    async def health(self) -> dict[str, Any]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.http)
        except OSError:
            return {}
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        data = await reader.read()
        writer.close()
        with contextlib.suppress(ValueError, IndexError):
            doc: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
            return doc
        return {}

    async def wait_health(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            doc = await self.health()
            if doc and check(doc):
                return True
            await asyncio.sleep(0.2)
        return False

    def restart_broker(self) -> None:
        from plantwire_bus.mosquitto import start_mosquitto

        self.broker = start_mosquitto(self.tmp / "mosquitto", port=self.broker_port)

    async def admin(self, sql: str) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(ADMIN_URL, autocommit=True) as conn:
            await conn.execute(sql.encode())

    async def stored(self, start: int, end: int) -> Counter[tuple[str, int, float]]:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.db_url) as conn:
            cur = await conn.execute(
                "SELECT s.metric, floor(extract(epoch FROM t.ts) * 1000)::bigint, t.value"
                " FROM sample_num t JOIN series s ON s.id = t.series_id"
                " WHERE s.group_id = %s AND t.ts >= %s AND t.ts < %s",
                (self.group, EPOCH + timedelta(milliseconds=start),
                 EPOCH + timedelta(milliseconds=end)),
            )  # fmt: skip
            return Counter((m, int(ts), float(v)) for m, ts, v in await cur.fetchall())

    async def settled(self, timeout: float) -> bool:
        """Wait until the buffer is empty and no new row arrived for 3 s."""
        import psycopg

        deadline, last, quiet = time.monotonic() + timeout, -1, 0
        while time.monotonic() < deadline and quiet < 3:
            await asyncio.sleep(1)
            with contextlib.suppress(psycopg.OperationalError):
                async with await psycopg.AsyncConnection.connect(self.db_url) as conn:
                    cur = await conn.execute("SELECT count(*) FROM sample_num")
                    row = await cur.fetchone()
                    count = int(row[0]) if row else 0
                doc = await self.health()
                empty = bool(doc) and doc["buffer"]["depth_values"] == 0
                quiet = quiet + 1 if count == last and empty else 0
                last = count
        return quiet >= 3

    async def down(self, keep: bool = False) -> None:
        from plantwire_platform import services

        for proc in [*self.procs, *(s.proc for s in self.servers if s.proc)]:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10)
        if self.broker is not None:
            self.broker.stop()
        for held in [*self.held, *(s.held for s in self.servers)]:
            held.close()
        if keep:
            print(f"kept: database {self.db_name}, folder {self.tmp}", flush=True)
            return
        with contextlib.suppress(Exception):
            services.drop_database(ADMIN_URL, self.db_name)
        shutil.rmtree(self.tmp, ignore_errors=True)  # the servers' logs, buffer, broker files


# -- the faults --------------------------------------------------------------------------------
Fault = Callable[[Rig, float], Awaitable[None]]


async def at(t0: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))


async def no_fault(rig: Rig, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def gateway_killed_in_broker_outage(rig: Rig, seconds: float) -> None:
    t0 = time.monotonic()
    await at(t0, 3)
    rig.broker.kill()
    await at(t0, 8)
    assert rig.gateway is not None
    rig.gateway.send_signal(signal.SIGKILL)
    await rig.gateway.wait()
    await at(t0, 11)
    await rig.start_gateway()  # its devices connect; the broker is still down
    await at(t0, 20)
    rig.restart_broker()
    await at(t0, seconds)


async def server_paused(rig: Rig, seconds: float) -> None:
    t0 = time.monotonic()
    await at(t0, 3)
    proc = rig.servers[0].proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    await at(t0, 23)
    proc.send_signal(signal.SIGCONT)
    await at(t0, seconds)


async def server_restarted(rig: Rig, seconds: float) -> None:
    """A planned restart: the server stops writing, publishes what it queued, exits."""
    t0 = time.monotonic()
    await at(t0, 3)
    server = rig.servers[0]
    assert server.proc is not None
    server.proc.terminate()
    await server.proc.wait()
    await at(t0, 6)
    await server.start(rig.interval_ms)
    await at(t0, seconds)


async def server_crashed(rig: Rig, seconds: float) -> None:
    """The server killed (SIGKILL) and started again 3 s later."""
    t0 = time.monotonic()
    await at(t0, 3)
    server = rig.servers[0]
    assert server.proc is not None
    rig.killed_at.append(now_ms())
    server.proc.send_signal(signal.SIGKILL)
    await server.proc.wait()
    await at(t0, 6)
    await server.start(rig.interval_ms)
    await at(t0, seconds)


async def ingest_frozen_broker_killed(rig: Rig, seconds: float) -> None:
    t0 = time.monotonic()
    assert rig.ingest is not None
    await at(t0, 3)
    rig.ingest.send_signal(signal.SIGSTOP)
    await at(t0, 5)
    rig.broker.kill()
    await at(t0, 10)
    rig.restart_broker()
    await at(t0, 15)
    rig.ingest.send_signal(signal.SIGCONT)
    await at(t0, seconds)


async def database_unreachable(rig: Rig, seconds: float) -> None:
    t0 = time.monotonic()
    await at(t0, 3)
    await rig.admin(f'ALTER DATABASE "{rig.db_name}" ALLOW_CONNECTIONS false')
    await rig.admin(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{rig.db_name}'"
    )
    await at(t0, 18)
    await rig.admin(f'ALTER DATABASE "{rig.db_name}" ALLOW_CONNECTIONS true')
    assert rig.ingest is not None
    if rig.ingest.returncode is not None:
        rig.notes.append(f"ingest exited with {rig.ingest.returncode}")
    await at(t0, seconds)


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    fault: Fault
    variables: int = 0  # 0: --variables
    servers: int = 1
    burst: bool = False
    cpu_load: bool = False
    history: bool = False  # the server keeps its values' history (HistoryRead)
    watched: bool = False  # the servers log what they publish: the values no client could see


CASES = [
    Case("none", "no fault (baseline)", no_fault),
    Case("starved", "CPU-starved server, 1,000 variables, both cores busy", no_fault, 1000,
         cpu_load=True),
    Case("fleet", "4 servers x 600 variables every 100 ms (24,000 changes/s)", no_fault, 600, 4),
    Case("burst", "bursts: 5 writes of one variable within 1 ms, every second", no_fault,
         burst=True),
    Case("gateway-kill", "gateway SIGKILL during a broker outage, restarted",
         gateway_killed_in_broker_outage),
    Case("server-pause", "OPC UA server paused 20 s (SIGSTOP/SIGCONT)", server_paused),
    Case("server-restart", "OPC UA server restarted (server keeps history)", server_restarted,
         history=True, watched=True),
    Case("server-restart-bare", "OPC UA server restarted, server without history",
         server_restarted, watched=True),
    Case("server-crash", "OPC UA server killed, restarted (server keeps history)",
         server_crashed, history=True, watched=True),
    Case("server-crash-bare", "OPC UA server killed, restarted, server without history",
         server_crashed, watched=True),
    Case("ingest-frozen", "ingest frozen (SIGSTOP) while the broker is killed",
         ingest_frozen_broker_killed),
    Case("database", "PostgreSQL refuses connections for 15 s", database_unreachable),
]  # fmt: skip


async def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"plantwire-faults-{case.name}-"))
    variables = case.variables or args.variables
    from plantwire_bus.mosquitto import reserve_port

    servers = [
        Server(reserve_port(), tmp / f"truth{k}.txt", variables, case.burst, case.history,
               case.watched)
        for k in range(case.servers)
    ]  # fmt: skip
    rig = Rig(tmp, args.interval_ms, servers)
    burners: list[asyncio.subprocess.Process] = []
    try:
        await rig.up()
        if case.cpu_load and not args.cpu_load:  # (with --cpu-load, the cores are busy already)
            burners = await burn(os.cpu_count() or 2)
        await asyncio.sleep(3)
        gateway = rig.gateway
        assert gateway is not None
        t1, cpu1 = now_ms(), cpu_seconds(gateway.pid)
        await case.fault(rig, args.seconds)
        t2, load = now_ms(), os.getloadavg()[0]
        same = rig.gateway is gateway and gateway.returncode is None
        cpu2 = cpu_seconds(gateway.pid) if same else cpu1  # per value: one process only
        for burner in burners:
            burner.kill()
        for server in servers:  # the machines stop writing; what they queued still flows
            if server.proc is not None and server.proc.returncode is None:
                server.proc.send_signal(signal.SIGCONT)
                server.proc.send_signal(signal.SIGUSR1)
        drained = await rig.settled(180)
        made: Counter[tuple[str, int, float]] = Counter()
        for server in servers:
            made += produced(server.truth, t1, t2)
        stored = await rig.stored(t1, t2)
        missing = made - stored
        unseen: Counter[tuple[str, int, float]] = Counter()
        killed = max(rig.killed_at, default=0)
        for server in servers:  # written, never published, in no history: no client saw them
            if server.watched:
                out = published(server.truth.with_suffix(".published"))
                for key, n in missing.items():
                    if (key[1], key[2]) not in out and (not server.history or key[1] <= killed):
                        unseen[key] = n
        doubled = sum((stored - made).values())
        delivered = sum((made & stored).values())
        differences = (("lost", missing - unseen), ("doubled", stored - made))
        found = [f"{what} e.g. {examples(diff)}" for what, diff in differences if diff]
        died = sum(n for (_, ts, _), n in unseen.items() if ts <= killed)
        unwatched = sum(unseen.values()) - died
        why = [f"{died} written by the killed server and never published"] if died else []
        why += [f"{unwatched} written while no subscription watched them"] if unwatched else []
        if why:
            found.insert(0, "unseen: " + ", ".join(why))
        return {
            "fault": case.title,
            "produced": sum(made.values()),
            "stored": delivered,
            "lost": sum((missing - unseen).values()),
            "unseen": sum(unseen.values()),
            "doubled": doubled,
            "rate": sum(made.values()) / max(1e-3, (t2 - t1) / 1000),
            "window_s": (t2 - t1) / 1000,
            "load": load,
            "us_per_value": (cpu2 - cpu1) / max(1, delivered) * 1e6 if cpu2 > cpu1 else None,
            "notes": "; ".join(rig.notes + ([] if drained else ["buffer not drained"]) + found),
        }
    finally:
        for burner in burners:
            with contextlib.suppress(ProcessLookupError):
                burner.kill()
        await rig.down(keep=args.keep)


def examples(diff: Counter[tuple[str, int, float]]) -> str:
    """A few (metric, time, count) of a difference, earliest first, to find the cause."""
    first = sorted(diff.items(), key=lambda kv: kv[0][1])[:3]
    return ", ".join(
        f"{metric}@{datetime.fromtimestamp(ts / 1000, UTC):%H:%M:%S.%f}"[:-3] + f" x{n}"
        for (metric, ts, _), n in first
    )


async def burn(count: int) -> list[asyncio.subprocess.Process]:
    """``count`` CPU-bound processes (kill them when done)."""
    return [
        await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
        for _ in range(count)
    ]


async def main(args: argparse.Namespace) -> None:
    chosen = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    print(
        f"{args.variables} variables every {args.interval_ms} ms per server unless said; "
        f"{args.seconds:.0f} s per fault; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"{args.cpu_load} CPU-bound load processes for the whole run; load average "
        f"{os.getloadavg()[0]:.1f} before starting"
    )
    head = (
        f"{'fault':<58} {'produced':>9} {'stored':>9} {'lost':>6} {'unseen':>6} {'doubled':>7} "
        f"{'window':>7} {'/s':>7} {'us/value':>8} {'load':>5}"
    )
    print(head)
    burners = await burn(args.cpu_load)
    try:
        for case in chosen:
            row = await run_case(case, args)
            us = f"{row['us_per_value']:.1f}" if row["us_per_value"] else "-"
            print(
                f"{row['fault']:<58} {row['produced']:>9,} {row['stored']:>9,} "
                f"{row['lost']:>6,} {row['unseen']:>6,} {row['doubled']:>7,} "
                f"{row['window_s']:>6.1f}s {row['rate']:>7,.0f} {us:>8} {row['load']:>5.1f}"
                + (f"   ({row['notes']})" if row["notes"] else ""),
                flush=True,
            )
    finally:
        for burner in burners:
            with contextlib.suppress(ProcessLookupError):
                burner.kill()


def cli() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        port, variables, interval, truth, burst, history, watched = sys.argv[2:9]
        asyncio.run(
            serve(
                int(port), int(variables), int(interval), Path(truth), burst == "1",
                history == "1", watched == "1",
            )
        )  # fmt: skip
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated fault names: "
                        + ", ".join(c.name for c in CASES))  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="production window")
    parser.add_argument("--variables", type=int, default=100)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument(
        "--cpu-load",
        type=int,
        default=0,
        help="start this many CPU-bound processes for the whole run (2: both cores busy)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each rig's database and folder (to look into)"
    )
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
