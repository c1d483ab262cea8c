"""A registered gateway's freshness under a flood of unregistered senders (issue 12).

    .venv/bin/python bench/flood.py [--hostile 10000] [--registered 400] [--runs 3]
                                    [--protocol 5|3.1.1] [--profile worker.prof]

Starts a private Mosquitto (the project's config), a fresh database with a registry naming
one gateway (GW1 with machine CNC-01) and ``plantwire platform ingest`` as its own process
(node identity on: unregistered senders refused). Per run, another process publishes
``--hostile`` messages of unregistered nodes as fast as it can (births of 10 to 5,000
metrics, births of devices GW1 does not own, a rogue gateway speaking for CNC-01, deaths,
random bytes) while this one publishes the registered gateway's data every 25 ms; each
registered value's freshness is the time from its publish to its row being found by a query,
set beside the time a bystander subscriber of that topic alone got it from the broker.
Prints p50/p99/max per run, how long the flood took to publish, the worker's CPU (cores and
microseconds a message published), how many flood messages reached the worker (its refusals
on ``/metrics``: it subscribes to the registered node's topics only, so only the births of
devices GW1 does not own get to it) and the load average; first, what a bare subscriber of
the whole namespace (``spBv1.0/#``, the worker's subscription before issue 12) spends to take
and acknowledge each flood message as the worker's MQTT client does: the cost the worker no
longer has. ``--protocol 3.1.1`` connects the worker (and the bare subscriber) with MQTT
3.1.1; ``--profile`` runs the worker under cProfile and prints its top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import pstats
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

from plantwire_bus.mosquitto import start_mosquitto
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, decode_payload, encode_payload
from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC
from plantwire_bus.topics import state_topic
from plantwire_platform import services
from plantwire_platform.database import migrate
from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry

HOST_ID = "flood-bench"
GROUP = "FLOOD"
REGISTRY = f"""
[[enterprises]]
code = "{GROUP}"
uscc = "91110000MA0000000X"
name = "Flood Works"

[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "GW1"

[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"
processes = [
  {{ code = "OP10", name = "Turning", is_key = true, key_reason = "fit", equipment = ["CNC-01"] }},
]

[[enterprises.sites.equipment]]
code = "CNC-01"
name = "Lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
"""
FLOODER = """
import asyncio, pickle, sys, time
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url

async def main() -> None:
    messages = pickle.loads(open(sys.argv[1], "rb").read())
    async with MqttClient(parse_mqtt_url(sys.argv[2]), sys.argv[3], max_inflight=1000) as c:
        started = time.monotonic()
        await asyncio.gather(*(c.publish_nowait(t, p) for t, p in messages))
        print(f"{time.monotonic() - started:.2f}", flush=True)

asyncio.run(main())
"""


def state_birth(ts: int, seq: int) -> bytes:
    metrics = (
        Metric(name=MODE_METRIC, alias=1, datatype=DataType.String, value="AUTO"),
        Metric(name=EXECUTION_METRIC, alias=2, datatype=DataType.String, value="EXECUTING"),
        Metric(name="Spindle/Speed", alias=3, datatype=DataType.Double, value=1200.0),
    )
    return encode_payload(Payload(timestamp=ts, seq=seq, metrics=metrics))


def node_birth(ts: int) -> bytes:
    bd = Metric(name="bdSeq", datatype=DataType.Int64, value=0)
    return encode_payload(Payload(timestamp=ts, seq=0, metrics=(bd,)))


def hostile(rng: random.Random, i: int, now: int) -> tuple[str, bytes]:
    kind, node = rng.randrange(6), f"X{rng.randrange(2_000)}"
    group = GROUP if rng.random() < 0.5 else f"Q{rng.randrange(500)}"
    if kind == 0:
        size = 5_000 if i % 500 == 0 else rng.choice((10, 300))
        metrics = tuple(
            Metric(name=f"m{k}", alias=k, datatype=DataType.Double, value=float(k))
            for k in range(size)
        )
        return f"spBv1.0/{group}/NBIRTH/{node}", encode_payload(
            Payload(timestamp=now, seq=0, metrics=metrics)
        )
    if kind == 1:
        return f"spBv1.0/{group}/DBIRTH/{node}/CNC-01", state_birth(now, 1)
    if kind == 2:
        metric = Metric(alias=3, datatype=DataType.Double, value=-1.0)
        payload = Payload(timestamp=now + i, seq=i % 256, metrics=(metric,))
        return f"spBv1.0/{GROUP}/DDATA/ROGUE-GW/CNC-01", encode_payload(payload)
    if kind == 3:
        return f"spBv1.0/{GROUP}/DBIRTH/GW1/EVIL-{i}", state_birth(now, 1)
    if kind == 4:
        return f"spBv1.0/{group}/NDEATH/{node}", node_birth(now)
    return f"spBv1.0/{group}/NDATA/{node}", rng.randbytes(rng.randrange(1, 4_000))


async def receive_cost(mqtt_url: str, flood: Path, count: int, protocol: str) -> float:
    """CPU microseconds a message of a subscriber that only takes and acknowledges the flood,
    as the worker's MQTT client does (QoS 1, acknowledged by hand): the floor of the
    worker's cost."""
    address = parse_mqtt_url(mqtt_url + ("?protocol=3.1.1" if protocol == "3.1.1" else ""))
    async with MqttClient(address, "bench-receiver", manual_ack=True) as client:
        await client.subscribe("spBv1.0/#", 1)
        before = time.process_time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, str(flood), mqtt_url, "flood-receive",
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(count):
            client.ack(await asyncio.wait_for(client.next_message(), 60))
        used = time.process_time() - before
        await proc.wait()
    return used / count * 1e6


def refused(metrics_port: int) -> int:
    """The worker's refusals so far, by its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("plantwire_ingest_refused_total{")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_run(
    edge: MqttClient, database_url: str, mqtt_url: str, flood: Path, registered: int, run: int
) -> tuple[list[float], list[float], float]:
    sent: dict[float, float] = {}
    seen: dict[float, float] = {}
    delivered: dict[float, float] = {}  # when a bystander subscriber got it from the broker
    base = run * 100_000.0  # this run's values

    async def publishing() -> None:
        for i in range(registered):
            ts = time.time_ns() // 1_000_000
            value = base + i + 1.0
            metric = Metric(alias=3, datatype=DataType.Double, value=value, timestamp=ts)
            data = Payload(timestamp=ts, seq=(run * registered + i + 2) % 256, metrics=(metric,))
            sent[value] = time.monotonic()
            await edge.publish(f"spBv1.0/{GROUP}/DDATA/GW1/CNC-01", encode_payload(data))
            await asyncio.sleep(0.025)

    flood_s = 0.0

    async def flooding() -> None:
        nonlocal flood_s
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, str(flood), mqtt_url, f"flood-{run}",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        flood_s = float(out.decode().strip() or "nan")

    async def watching() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            deadline = time.monotonic() + 120
            while len(seen) < registered and time.monotonic() < deadline:
                cur = await c.execute(
                    "SELECT t.value FROM sample_num t JOIN series s ON s.id = t.series_id"
                    " WHERE s.edge_node_id = 'GW1' AND s.metric = 'Spindle/Speed'"
                    " AND t.value > %s AND t.value <= %s",
                    (base, base + registered),
                )
                at = time.monotonic()
                for (value,) in await cur.fetchall():
                    seen.setdefault(float(value), at)
                await asyncio.sleep(0.02)

    async def bystanding() -> None:
        address = parse_mqtt_url(mqtt_url)
        async with MqttClient(address, f"bystander-{run}") as probe:
            await probe.subscribe(f"spBv1.0/{GROUP}/DDATA/GW1/CNC-01", 0)
            ready.set()
            while len(delivered) < registered:
                try:
                    message = await asyncio.wait_for(probe.next_message(), 30)
                except TimeoutError:
                    return
                at = time.monotonic()
                for metric in decode_payload(message.payload).metrics:
                    if isinstance(metric.value, float):
                        delivered.setdefault(metric.value, at)

    ready = asyncio.Event()
    watcher = asyncio.create_task(bystanding())
    await asyncio.wait_for(ready.wait(), 30)
    await asyncio.gather(publishing(), flooding(), watching(), watcher)
    lags = sorted(seen[v] - sent[v] for v in sent if v in seen)
    if len(lags) != registered:
        print(f"  run {run}: only {len(lags)} of {registered} registered values stored")
    broker_lags = sorted(delivered[v] - sent[v] for v in sent if v in delivered)
    return lags, broker_lags, flood_s


async def run(args: argparse.Namespace) -> None:
    admin = os.environ.get(
        "PLANTWIRE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"
    )
    database_url = services.ensure_database(admin, "plantwire_bench_flood", fresh=True)
    await migrate(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(conn, parse_registry(REGISTRY))
    tmp = Path(tempfile.mkdtemp(prefix="plantwire-flood-"))
    broker = start_mosquitto(tmp / "mosquitto")
    worker_url = broker.url + ("?protocol=3.1.1" if args.protocol == "3.1.1" else "")
    metrics_port = free_port()
    env = dict(
        os.environ, DATABASE_URL=database_url, MQTT_URL=worker_url, PLANTWIRE_HOST_ID=HOST_ID,
        PLANTWIRE_METRICS_PORT=str(metrics_port),
    )  # fmt: skip
    command = [str(Path(sys.executable).parent / "plantwire")]
    if args.profile:
        command = [sys.executable, "-m", "cProfile", "-o", args.profile, "-m", "plantwire.cli"]
    worker = subprocess.Popen(  # noqa: ASYNC220 (started once, before the measurements)
        [*command, "--log-level", "WARNING", "platform", "ingest"], env=env
    )
    rng = random.Random(12)
    now = time.time_ns() // 1_000_000
    flood = tmp / "flood.pickle"
    messages = [hostile(rng, i, now) for i in range(args.hostile)]
    flood.write_bytes(pickle.dumps(messages))
    unowned = sum(1 for topic, _ in messages if topic.startswith(f"spBv1.0/{GROUP}/DBIRTH/GW1/"))
    megabytes = sum(len(t) + len(p) for t, p in pickle.loads(flood.read_bytes())) / 1e6
    try:
        async with MqttClient(parse_mqtt_url(broker.url), "bench-gw1") as edge:
            await edge.subscribe(state_topic(HOST_ID))
            await asyncio.wait_for(edge.next_message(), 30)
            t0 = time.time_ns() // 1_000_000
            await edge.publish(f"spBv1.0/{GROUP}/NBIRTH/GW1", node_birth(t0 - 10))
            await edge.publish(f"spBv1.0/{GROUP}/DBIRTH/GW1/CNC-01", state_birth(t0 - 10, 1))
            await asyncio.sleep(1)
            print(f"flood bench: {args.hostile} hostile messages ({megabytes:.1f} MB) per run"
                  f" against {args.registered} registered DDATA every 25 ms; the worker on MQTT"
                  f" {args.protocol}",
                  flush=True)  # fmt: skip
            floor = await receive_cost(broker.url, flood, args.hostile, args.protocol)
            print(f"  MQTT receive alone (a subscriber of spBv1.0/# taking and acknowledging"
                  f" the flood):"
                  f" {floor:.0f} us CPU a message; load average {os.getloadavg()[0]:.1f}",
                  flush=True)  # fmt: skip
            for n in range(args.runs):
                load = os.getloadavg()[0]
                cpu = cpu_seconds(worker.pid)
                refusals = refused(metrics_port)
                wall = time.monotonic()
                lags, broker_lags, flood_s = await one_run(
                    edge, database_url, broker.url, flood, args.registered, n
                )
                used = cpu_seconds(worker.pid) - cpu
                reached = refused(metrics_port) - refusals
                busy = used / (time.monotonic() - wall)
                per_message = used / (args.hostile + args.registered) * 1e6
                q = statistics.quantiles(lags, n=100)
                b = statistics.quantiles(broker_lags, n=100)
                print(f"  run {n + 1}: freshness p50 {q[49]:.3f} s, p99 {q[98]:.3f} s,"
                      f" max {lags[-1]:.3f} s (a bystander subscriber: p50 {b[49]:.3f} s,"
                      f" p99 {b[98]:.3f} s); flood published in {flood_s:.1f} s;"
                      f" worker {busy:.2f} cores, {per_message:.0f} us CPU a message"
                      f" published; {reached} flood messages reached the worker"
                      f" ({unowned} about devices GW1 does not own);"
                      f" load average {load:.1f} before,"
                      f" {os.getloadavg()[0]:.1f} after", flush=True)  # fmt: skip
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        broker.stop()
    if args.profile:
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile", type=int, default=10_000)
    parser.add_argument("--registered", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", help="cProfile output file for the worker")
    parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="the worker's")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
