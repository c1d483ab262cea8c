"""Three ingest workers sharing one MQTT v5 shared subscription on a real Mosquitto: births and
data land on different workers, and every sample is stored exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import psycopg

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType, Topic
from plantwire_platform.ingest.worker import IngestWorker

from .test_worker import shared_settings

NODES, DEVICES, MESSAGES, METRICS = 3, 3, 30, 10


def plan(
    group: str, t0: int
) -> tuple[list[tuple[str, bytes]], set[tuple[str, str, str, int, float]]]:
    """Births and data of every node, interleaved as separate gateways would send them (the
    broker hands shared-subscription messages round robin: a fixed interleaving would send
    each device's messages to one worker)."""
    truth: set[tuple[str, str, str, int, float]] = set()
    streams: list[list[tuple[str, bytes]]] = []
    for n in range(NODES):
        node, seq = f"N{n}", 0
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
        for d in range(DEVICES):
            seq += 1
            metrics = tuple(
                Metric(
                    name=f"S{i}", alias=i + 1, datatype=DataType.Double, value=-1.0, timestamp=t0
                )
                for i in range(METRICS)
            )
            out.append(
                (
                    str(Topic(group, MessageType.DBIRTH, node, f"D{d}")),
                    encode_payload(Payload(timestamp=t0, seq=seq, metrics=metrics)),
                )
            )
            truth |= {(node, f"D{d}", f"S{i}", t0, -1.0) for i in range(METRICS)}
        for k in range(MESSAGES):
            for d in range(DEVICES):
                seq = (seq + 1) % 256
                ts = t0 + 1 + k
                metrics = tuple(
                    Metric(alias=i + 1, datatype=DataType.Double, value=k * 100.0 + i, timestamp=ts)
                    for i in range(METRICS)
                )
                payload = Payload(timestamp=ts, seq=seq, metrics=metrics)
                out.append(
                    (
                        str(Topic(group, MessageType.DDATA, node, f"D{d}")),
                        encode_payload(payload, omit_datatypes=True),
                    )
                )
                truth |= {(node, f"D{d}", f"S{i}", ts, k * 100.0 + i) for i in range(METRICS)}
        streams.append(out)
    rng, interleaved = random.Random(5), []  # gateways interleave at random, each in order
    while streams:
        stream = rng.choice(streams)
        interleaved.append(stream.pop(0))
        if not stream:
            streams.remove(stream)
    return interleaved, truth


async def stored(database_url: str) -> set[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT s.edge_node_id, s.device_id, s.metric,"
            " (extract(epoch FROM t.ts) * 1000)::bigint, t.value"
            " FROM sample_num t JOIN series s ON s.id = t.series_id"
        )
        return {(n, d, m, int(ts), v) for n, d, m, ts, v in await cur.fetchall()}


async def scalar(database_url: str, sql: str) -> Any:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(sql.encode())
        row = await cur.fetchone()
        return row[0] if row else None


async def test_three_workers_share_one_subscription(
    database_url: str, mqtt_url: str, unique: str
) -> None:
    settings = shared_settings(database_url, mqtt_url, unique, host="scale")
    workers = [IngestWorker(settings, client_suffix=f"ingest-{i}") for i in range(3)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        for w in workers:
            await asyncio.wait_for(w.ready.wait(), 10)
        group = f"G{unique}"
        messages, truth = plan(group, time.time_ns() // 1_000_000 - 60_000)
        async with MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}", max_inflight=500) as edge:
            await asyncio.gather(*(edge.publish_nowait(t, p) for t, p in messages))
        deadline = time.monotonic() + 30
        while len(got := await stored(database_url)) < len(truth) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert got == truth
        assert await scalar(database_url, "SELECT count(*) FROM sample_num") == len(truth)
        assert await scalar(database_url, "SELECT count(*) FROM dead_letter") == 0
        taken = [w.stats.sparkplug_messages for w in workers]
        assert sum(taken) == len(messages) and all(taken)  # every worker took a share
        assert await scalar(database_url, "SELECT count(DISTINCT worker) FROM sparkplug_birth") >= 2
        assert (
            sum(w.stats.resolved_elsewhere for w in workers) > 0
        )  # data met a birth via the database
        assert sum(w.stats.rebirths_requested for w in workers) == 0  # reordering is not a gap
        sessions = await scalar(
            database_url, "SELECT count(*) FROM connectivity_session WHERE offline_at IS NULL"
        )
        assert sessions == NODES * (DEVICES + 1)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
