"""Ingest throughput, freshness and storage cost, with the raw COPY ceiling as the baseline.

    .venv/bin/python bench/ingest.py [--rates 150000,200000,250000] [--seconds 8]
                                     [--samples 1000000] [--nodes 10] [--devices 5]
                                     [--database postgres|timescaledb] [--chain-days 30]

Starts a private Mosquitto (the project's config) and an ingest worker as its own process
(``plantwire platform ingest``) on a fresh database; this process plays the edge nodes.
Prints, in one run:

1. end-to-end samples/s in 100-metric DDATA messages published at QoS 1: a burst of
   ``--samples`` as fast as the publisher goes (timed from the first publish to the last
   commit), then each of ``--rates`` held for ``--seconds``; a rate is sustained when the
   last row is committed within 1 s of the last publish. The stored row count is checked
   against what was sent. The publisher shares the two cores (QoS 1 costs it ~120 us of CPU
   a message), as the bare-pipeline baseline of issue #5 did;
2. two raw binary COPY ceilings of the very same rows, in batches of the worker's size: into
   the same (emptied) table - indexed, partitioned or a hypertable - and into an unindexed,
   unpartitioned table (what the disk and the server take at best), with the ratio of the
   sustained rate to each;
3. p50/p99 freshness at 20,000 samples/s: from publish to the row being found by a query;
4. bytes on disk per sample while hot (heap, indexes and TOAST of the sample_num partitions or
   chunks) and cold: packed (plain PostgreSQL, PLANTWIRE_PACK_AFTER_DAYS: one row per series
   and day) or compressed (TimescaleDB, segmented by series, ordered by time);
5. with --chain-days, the chain indicator request over that many days on the same backend
   (bench/indicators.py, run as a child: cold request after ingest, warm p50/p95).

Database (--database): ``postgres`` is PLANTWIRE_BENCH_DATABASE_URL (a server URL; a database
is created on it), else the local PostgreSQL; ``timescaledb`` is a private PostgreSQL 15
cluster with TimescaleDB preloaded (fsync on), started for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from plantwire_bus.mosquitto import free_port, start_mosquitto
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType, Topic, state_topic
from plantwire_platform import services, timescaledb
from plantwire_platform.database import migrate
from plantwire_platform.storage.partitions import pack

ROOT = Path(__file__).resolve().parent.parent
METRICS = 100
HOST_ID = "bench"


def births(group: str, node: str, devices: int, t0: int) -> list[tuple[str, bytes]]:
    out = [
        (
            str(Topic(group, MessageType.NBIRTH, node)),
            encode_payload(
                Payload(
                    timestamp=t0,
                    seq=0,
                    metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),),
                )
            ),
        )
    ]
    for d in range(devices):
        metrics = tuple(
            Metric(name=f"Sensor/{i:03d}", alias=i + 1, datatype=DataType.Double, value=0.0)
            for i in range(METRICS)
        )
        payload = Payload(timestamp=t0, seq=d + 1, metrics=metrics)
        out.append((str(Topic(group, MessageType.DBIRTH, node, f"D{d}")), encode_payload(payload)))
    return out


def ddata(seq: int, ts: int, k: int) -> bytes:
    """A DDATA of METRICS noisy readings (noise: storage must not flatter compression)."""
    noise = random.Random(k)
    metrics = tuple(
        Metric(
            alias=i + 1, datatype=DataType.Double, timestamp=ts, value=round(noise.gauss(50, 10), 4)
        )
        for i in range(METRICS)
    )
    payload = Payload(timestamp=ts, seq=seq, metrics=metrics)
    return encode_payload(payload, omit_datatypes=True)


class Fleet:
    """Simulated edge nodes: births, then DDATA with consecutive seqs per node."""

    def __init__(self, nodes: int, devices: int, t0: int) -> None:
        self.group = "BENCH"
        self.nodes = [f"N{n}" for n in range(nodes)]
        self.devices = devices
        self.t0 = t0
        self.seq = dict.fromkeys(self.nodes, devices)  # after NBIRTH 0 and the DBIRTHs
        self.count = 0

    def births(self) -> list[tuple[str, bytes]]:
        return [m for node in self.nodes for m in births(self.group, node, self.devices, self.t0)]

    def plan(self, messages: int, ts_of: int | None = None) -> Iterator[tuple[str, int, int]]:
        """(topic, seq, ts) of the next ``messages`` DDATA, round robin over devices."""
        per_round = len(self.nodes) * self.devices
        for _ in range(messages):
            k = self.count
            self.count += 1
            node = self.nodes[k % len(self.nodes)]
            device = (k // len(self.nodes)) % self.devices
            self.seq[node] = (self.seq[node] + 1) % 256
            ts = ts_of if ts_of is not None else self.t0 + 1 + k // per_round
            topic = str(Topic(self.group, MessageType.DDATA, node, f"D{device}"))
            yield topic, self.seq[node], ts


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    out.append(int(entry.name))
    return out


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in group) for name, group in pids.items()}


def worker_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def worker_samples(port: int) -> int:
    return int(worker_metric(port, "plantwire_ingest_samples_total"))


async def wait_samples(port: int, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(worker_samples, port) >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"worker stored fewer than {expected} samples in {timeout:.0f} s")


async def burst(edge: MqttClient, fleet: Fleet, samples: int, port: int) -> tuple[float, float]:
    """Publish ``samples`` as fast as QoS 1 allows: (samples/s to the last commit, publish s)."""
    messages = samples // METRICS
    payloads = [(t, ddata(seq, ts, i)) for i, (t, seq, ts) in enumerate(fleet.plan(messages))]
    before = await asyncio.to_thread(worker_samples, port)
    started = time.perf_counter()
    window: list[asyncio.Future[None]] = []
    for topic, payload in payloads:
        window.append(edge.publish_nowait(topic, payload))
        if len(window) >= 500:
            await asyncio.gather(*window)
            window.clear()
    await asyncio.gather(*window)
    published = time.perf_counter()
    done = await wait_samples(port, before + messages * METRICS, 600)
    return messages * METRICS / (done - started), published - started


async def paced(
    edge: MqttClient, fleet: Fleet, rate: int, seconds: float, port: int
) -> tuple[float, float]:
    """Publish ``rate`` samples/s for ``seconds``: (samples/s committed over the run, seconds
    from the last publish to the last commit)."""
    per_s = rate / METRICS
    messages = int(per_s * seconds)
    payloads = [(t, ddata(seq, ts, i)) for i, (t, seq, ts) in enumerate(fleet.plan(messages))]
    before = await asyncio.to_thread(worker_samples, port)
    pending: list[asyncio.Future[None]] = []
    started = time.perf_counter()
    for i, (topic, payload) in enumerate(payloads):
        if i % 20 == 0:  # 20 messages at a time, on schedule
            await asyncio.sleep(max(0.0, started + i / per_s - time.perf_counter()))
        pending.append(edge.publish_nowait(topic, payload))
    await asyncio.gather(*pending)
    published = time.perf_counter()
    done = await wait_samples(port, before + messages * METRICS, 600)
    return messages * METRICS / (done - started), done - published


async def freshness(
    edge: MqttClient, fleet: Fleet, database_url: str, rate: int, seconds: float
) -> list[float]:
    """Publish ``rate`` samples/s; for each message, publish-to-found delay in seconds."""
    per_s = rate / METRICS
    messages = int(per_s * seconds)
    found: list[float] = []
    probe_series: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT edge_node_id || '/' || device_id, id FROM series WHERE metric = 'Sensor/000'"
        )
        probe_series = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
        pending: dict[tuple[int, int], float] = {}  # (series, ts) -> publish time

        async def poll() -> None:
            while True:
                if pending:
                    keys = list(pending)
                    cur = await conn.execute(
                        "SELECT series_id, (extract(epoch FROM ts) * 1000)::bigint FROM sample_num"
                        " WHERE (series_id, ts) IN (SELECT s, TIMESTAMPTZ 'epoch'"
                        "  + t * INTERVAL '1 millisecond' FROM unnest(%s::bigint[], %s::bigint[])"
                        "  AS u(s, t))",
                        ([k[0] for k in keys], [k[1] for k in keys]),
                    )
                    now = time.perf_counter()
                    for sid, ts in await cur.fetchall():
                        sent = pending.pop((int(sid), int(ts)), None)
                        if sent is not None:
                            found.append(now - sent)
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll())
        start = time.perf_counter()
        for i, (topic, seq, _) in enumerate(fleet.plan(messages, ts_of=0)):
            due = start + i / per_s
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            ts = time.time_ns() // 1_000_000
            payload = ddata(seq, ts, i)
            node, device = topic.split("/")[3:5]
            pending[(probe_series[f"{node}/{device}"], ts)] = time.perf_counter()
            edge.publish_nowait(topic, payload)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    return found


async def ceiling(database_url: str, batch_rows: int) -> tuple[float, float, int]:
    """Raw binary COPY of the stored sample_num rows back into the emptied table, and into an
    unindexed, unpartitioned table; rows/s of each."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        chunks: list[bytes] = []
        dump_sql = "COPY (SELECT series_id, ts, value FROM sample_num) TO STDOUT (FORMAT BINARY)"
        async with conn.cursor() as cur, cur.copy(dump_sql) as copy:
            async for data in copy:
                chunks.append(bytes(data))
        dump = b"".join(chunks)
        header, trailer = 19, 2
        rows = dump[header:-trailer]
        row_len = 2 + 4 + 8 + 4 + 8 + 4 + 8  # fixed for non-null doubles
        total = len(rows) // row_len
        step = batch_rows * row_len
        await conn.execute(
            "CREATE TABLE sample_bare (series_id bigint, ts timestamptz, value double precision)"
        )
        rates = []
        for table in ("sample_num", "sample_bare"):
            await conn.execute(f"TRUNCATE {table}")
            await conn.execute("CHECKPOINT")
            started = time.perf_counter()
            for offset in range(0, len(rows), step):
                async with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy,
                ):
                    await copy.write(dump[:header] + rows[offset : offset + step] + dump[-2:])
            rates.append(total / (time.perf_counter() - started))
        await conn.execute("DROP TABLE sample_bare")
    return rates[0], rates[1], total


async def packed_bytes_per_sample(database_url: str) -> tuple[float, int]:
    """Pack every day of sample_num (as the upkeep does for old days) and measure it."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await pack(conn, datetime(9999, 1, 1, tzinfo=UTC))
        await conn.execute("VACUUM ANALYZE sample_num_packed")
        cur = await conn.execute(
            "SELECT pg_total_relation_size('sample_num_packed'),"
            " (SELECT sum(cardinality(ts)) FROM sample_num_packed)"
        )
        row = await cur.fetchone()
    assert row is not None
    size, n = int(row[0]), int(row[1] or 0)
    return size / max(n, 1), n


async def compressed_bytes_per_sample(database_url: str) -> tuple[float, int]:
    """Compress every chunk of sample_num (as the compression policy does for old ones) and
    measure it."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true)"
            " FROM show_chunks('sample_num') AS c"
        )
        cur = await conn.execute(
            "SELECT (SELECT total_bytes FROM hypertable_detailed_size('sample_num')),"
            " (SELECT count(*) FROM sample_num)"
        )
        row = await cur.fetchone()
    assert row is not None
    size, n = int(row[0]), int(row[1] or 0)
    return size / max(n, 1), n


async def bytes_per_sample(database_url: str, backend: str) -> tuple[float, float, float, int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        sizes = (
            "SELECT table_bytes, index_bytes, total_bytes"
            " FROM hypertable_detailed_size('sample_num')"
            if backend == "timescaledb"
            else "SELECT sum(pg_relation_size(relid)), sum(pg_indexes_size(relid)),"
            " sum(pg_total_relation_size(relid)) FROM pg_partition_tree('sample_num')"
            " WHERE isleaf"
        )
        cur = await conn.execute(sizes.encode())
        row = await cur.fetchone()
        assert row is not None
        cur = await conn.execute("SELECT count(*) FROM sample_num")
        count_row = await cur.fetchone()
        n = int(count_row[0]) if count_row else 0
    heap, index, total = (int(v or 0) for v in row)
    return heap / n, index / n, total / n, n


def start_worker(database_url: str, mqtt_url: str, metrics_port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        MQTT_URL=mqtt_url,
        PLANTWIRE_HOST_ID=HOST_ID,
        PLANTWIRE_METRICS_PORT=str(metrics_port),
        PLANTWIRE_UNREGISTERED_NODES="admit",  # the bench's edge nodes are in no registry
    )
    command = [str(Path(sys.executable).parent / "plantwire")]
    profile = os.environ.get("PLANTWIRE_BENCH_PROFILE")  # cProfile output file for the worker
    if profile:
        command = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "plantwire.cli"]
    return subprocess.Popen([*command, "--log-level", "WARNING", "platform", "ingest"], env=env)


async def run(args: argparse.Namespace) -> None:
    if args.database == "timescaledb":
        cluster = await asyncio.to_thread(timescaledb.start_cluster, durable=True)
        try:
            await run_on(args, cluster.url)
        finally:
            cluster.stop()
    else:
        admin = os.environ.get(
            "PLANTWIRE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"
        )
        await run_on(args, admin)


async def run_on(args: argparse.Namespace, admin: str) -> None:
    database_url = services.ensure_database(admin, "plantwire_bench", fresh=True)
    await migrate(database_url)
    tmp = Path(tempfile.mkdtemp(prefix="plantwire-bench-"))
    broker = start_mosquitto(tmp / "mosquitto")
    metrics_port = free_port()
    worker = start_worker(database_url, broker.url, metrics_port)
    try:
        address = parse_mqtt_url(broker.url)
        async with MqttClient(address, "bench-edge", max_inflight=1000) as edge:
            await edge.subscribe(state_topic(HOST_ID))
            await asyncio.wait_for(edge.next_message(), 30)  # the worker is online
            t0 = time.time_ns() // 1_000_000  # live data: DDATA timestamps 1 ms apart per round
            fleet = Fleet(args.nodes, args.devices, t0)
            for topic, payload in fleet.births():
                await edge.publish(topic, payload)
            births_done = fleet.nodes.__len__() * fleet.devices * METRICS
            await wait_samples(metrics_port, births_done, 60)
            print(f"ingest bench on {args.database}: {args.nodes} nodes x {args.devices} devices"
                  f" x {METRICS} metrics, {args.samples} samples, 2-core machine",
                  flush=True)  # fmt: skip
            pids = {
                "worker": [worker.pid],
                "postgres": postgres_pids(),
                "mosquitto": [broker.process.pid],
                "publisher": [os.getpid()],
            }
            cpu_before, wall = cpu_snapshot(pids), time.perf_counter()
            rate, publish_s = await burst(edge, fleet, args.samples, metrics_port)
            cpu_after, wall = cpu_snapshot(pids), time.perf_counter() - wall
            busy = ", ".join(
                f"{name} {(cpu_after[name] - cpu_before[name]) / wall:.2f}" for name in pids
            )
            batches = worker_metric(metrics_port, "plantwire_ingest_batch_seconds_count")
            write_s = worker_metric(metrics_port, "plantwire_ingest_batch_seconds_sum")
            print(f"burst: {args.samples} samples as fast as QoS 1 publishing goes"
                  f" (publisher done in {publish_s:.1f} s)", flush=True)  # fmt: skip
            print(
                f"  {rate / 1000:.1f} k samples/s to the last commit; CPU cores busy: {busy};"
                f" {batches:.0f} batches, {write_s / batches * 1000:.0f} ms each",
                flush=True,
            )
            sent = births_done + args.samples
            sustained = 0
            for target in args.rates:
                achieved, drain = await paced(edge, fleet, target, args.seconds, metrics_port)
                sent += int(target / METRICS * args.seconds) * METRICS
                kept_up = drain <= 1.0
                sustained = max(sustained, target) if kept_up else sustained
                behind = "" if kept_up else " (fell behind)"
                print(f"paced {target / 1000:.0f} k samples/s for {args.seconds:.0f} s:"
                      f" {achieved / 1000:.1f} k/s committed, last row {drain:.2f} s after the"
                      f" last publish{behind}", flush=True)  # fmt: skip
            stored = await asyncio.to_thread(worker_samples, metrics_port)
            heap, index, total, rows = await bytes_per_sample(database_url, args.database)
            loss = "zero loss" if rows == sent else f"LOSS/DOUBLE: {rows} rows, {sent} sent"
            print(
                f"sustained end-to-end (publish -> committed) {sustained / 1000:6.0f} k samples/s"
                f" ({loss}: {rows} rows stored, worker counted {stored})",
                flush=True,
            )
            fresh = await freshness(edge, fleet, database_url, args.fresh_rate, args.fresh_seconds)
        worker.terminate()
        worker.wait(30)
        copy_rate, bare_rate, copied = await ceiling(database_url, args.batch_rows)
        if args.database == "timescaledb":
            cold, cold_rows = await compressed_bytes_per_sample(database_url)
        else:
            cold, cold_rows = await packed_bytes_per_sample(database_url)
        q = statistics.quantiles(fresh, n=100) if len(fresh) > 2 else [float("nan")] * 99
        table = "hypertable" if args.database == "timescaledb" else "partitioned table"
        print(f"raw binary COPY ceiling (baseline)  {copy_rate / 1000:8.1f} k rows/s"
              f" (indexed {table}; {copied} rows, {args.batch_rows}-row batches)")  # fmt: skip
        print(f"  unindexed, unpartitioned table    {bare_rate / 1000:8.1f} k rows/s")
        print(f"ratio sustained / ceiling           {sustained / copy_rate:8.2f}"
              f" (burst / ceiling {rate / copy_rate:.2f})")  # fmt: skip
        print(f"ratio sustained / unindexed ceiling {sustained / bare_rate:8.2f}"
              f" (burst {rate / bare_rate:.2f})")  # fmt: skip
        print(f"freshness at {args.fresh_rate} samples/s      p50 {q[49] * 1000:6.0f} ms,"
              f" p99 {q[98] * 1000:6.0f} ms ({len(fresh)} messages)")  # fmt: skip
        print(f"bytes on disk per sample, hot       {total:8.1f} (heap {heap:.1f},"
              f" indexes {index:.1f}; {rows} rows)")  # fmt: skip
        how = "compressed" if args.database == "timescaledb" else "packed"
        print(f"  cold: once {how} (old days)    {cold:8.1f} ({cold_rows} samples)")
    finally:
        if worker.poll() is None:
            worker.kill()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="burst size")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[150_000, 200_000, 225_000, 250_000],
        help="paced rates to try, samples/s",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per paced rate")
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--devices", type=int, default=5, help="devices per node")
    parser.add_argument("--fresh-rate", type=int, default=20_000, help="samples/s")
    parser.add_argument("--fresh-seconds", type=float, default=10.0)
    parser.add_argument("--batch-rows", type=int, default=10_000, help="ceiling COPY batch")
    parser.add_argument("--database", choices=("postgres", "timescaledb"), default="postgres")
    parser.add_argument(
        "--chain-days", type=int, default=0, help="then the chain indicator bench (0: skip)"
    )
    args = parser.parse_args()
    asyncio.run(run(args))
    if args.chain_days:
        command = [sys.executable, str(ROOT / "bench" / "indicators.py"), "--database"]
        command += [args.database, "--days", str(args.chain_days)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
