"""Every distinct value is kept: several values of a metric within one millisecond (the
plantwire.ordinal property), replays that never double them, and refused values counted and
dead-lettered. Real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import re
import time
import urllib.request
from typing import Any

import pytest

from plantwire_bus.extension import ORDINAL
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload

from .test_worker import WorkerFactory, count, query, start_worker, wait_for_count

__all__ = ["start_worker"]  # the fixture


def ddata(seq: int, ts: int, samples: list[tuple[int, float, int]]) -> bytes:
    """A DDATA of (alias, value, ordinal) samples, all stamped ``ts``, written by hand."""
    pb = PbPayload(timestamp=ts, seq=seq)
    for alias, value, ordinal in samples:
        m = pb.metrics.add()
        m.alias, m.timestamp, m.double_value = alias, ts, value
        if ordinal:
            m.properties.keys.append(ORDINAL)
            prop = m.properties.values.add()
            prop.type = int(DataType.UInt32)
            prop.int_value = ordinal
    return pb.SerializeToString()


async def test_values_within_one_millisecond_are_all_kept_once(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    group, now = f"L{unique}", int(time.time() * 1000)
    birth = (
        Metric(name="A", alias=1, datatype=DataType.Double, value=0.5, timestamp=now - 10),
        Metric(name="B", alias=2, datatype=DataType.Double, value=0.5, timestamp=now - 10),
    )
    burst = [(1, 1.0, 0), (1, 2.0, 1), (1, 3.0, 2), (1, 4.0, 3), (1, 5.0, 4), (2, 7.0, 0)]
    refused = [(2, math.nan, 1), (2, math.inf, 2), (1, 9.0, 5000)]
    async with start_worker(), MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge:
        await edge.publish(f"spBv1.0/{group}/NBIRTH/N", encode_payload(Payload(now - 10, 0)))
        dbirth = encode_payload(Payload(timestamp=now - 10, seq=1, metrics=birth))
        await edge.publish(f"spBv1.0/{group}/DBIRTH/N/D", dbirth)
        message = ddata(2, now, burst + refused)
        await edge.publish(f"spBv1.0/{group}/DDATA/N/D", message)
        await edge.publish(f"spBv1.0/{group}/DDATA/N/D", message)  # redelivered
        await edge.publish(f"spBv1.0/{group}/DDATA/N/D", ddata(3, now, burst))  # replayed
        n = await wait_for_count(database_url, "SELECT count(*) FROM dead_letter", 2)
        await asyncio.sleep(0.5)
    rows: list[tuple[Any, ...]] = await query(
        database_url,
        "SELECT s.metric, (extract(epoch FROM t.ts) * 1000000)::bigint, t.value"
        " FROM sample_num t JOIN series s ON s.id = t.series_id"
        f" WHERE t.ts >= to_timestamp({now} / 1000.0) ORDER BY s.metric, t.ts",
    )
    assert rows == [("A", now * 1000 + i, float(i + 1)) for i in range(5)] + [
        ("B", now * 1000, 7.0)
    ]
    assert n == 2  # the first delivery and the redelivery each leave one dead letter
    letters = await query(database_url, "SELECT reason, detail FROM dead_letter LIMIT 1")
    reason, detail = letters[0]
    assert reason == "non_finite_value"
    assert "non_finite_value x2" in detail and "bad_ordinal x1" in detail
    assert await count(database_url, "SELECT count(*) FROM dead_letter") == 2


@pytest.mark.parametrize("one_by_one", [False, True], ids=["batched", "one_by_one"])
async def test_ingest_survives_a_database_outage_without_a_supervisor(
    start_worker: WorkerFactory,
    database_url: str,
    pg_admin_url: str,
    mqtt_url: str,
    unique: str,
    one_by_one: bool,
) -> None:
    """The database refuses connections for a few seconds and the worker's connections are
    cut: the worker keeps running, says so on its metrics, and stores everything published
    meanwhile once the database is back. ``one_by_one``: batches of one message and the
    outage's messages published without waiting for each PUBACK, so that batches wait for the
    writer when it meets the outage (the worker hung there, not noticing the outage: its
    taking task waited for ever to hand the dead writer its last batch)."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    group, now = f"O{unique}", int(time.time() * 1000)
    birth = (Metric(name="A", alias=1, datatype=DataType.Double, value=0.5, timestamp=now),)

    async def admin(sql: str) -> None:
        async with await psycopg.AsyncConnection.connect(pg_admin_url, autocommit=True) as conn:
            await conn.execute(sql.encode())

    async with (
        start_worker(metrics_port=0, **({"batch_size": 1} if one_by_one else {})) as worker,
        MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge,
    ):
        await edge.publish(f"spBv1.0/{group}/NBIRTH/N", encode_payload(Payload(now, 0)))
        dbirth = encode_payload(Payload(timestamp=now, seq=1, metrics=birth))
        await edge.publish(f"spBv1.0/{group}/DBIRTH/N/D", dbirth)
        for seq in range(2, 12):
            await edge.publish(f"spBv1.0/{group}/DDATA/N/D", ddata(seq, now + seq, [(1, seq, 0)]))
        assert await wait_for_count(database_url, "SELECT count(*) FROM sample_num", 11) == 11
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        topic = f"spBv1.0/{group}/DDATA/N/D"
        if one_by_one:
            outage = [ddata(seq, now + seq, [(1, seq, 0)]) for seq in range(12, 40)]
            await asyncio.gather(*(edge.publish_nowait(topic, data) for data in outage))
        else:
            for seq in range(12, 40):
                await edge.publish(topic, ddata(seq, now + seq, [(1, seq, 0)]))
        deadline = time.monotonic() + 30  # its next batch meets the refusal (seconds at load)
        while worker.stats.outages < 1:
            assert time.monotonic() < deadline, f"no outage noticed: {worker.stats}"
            await asyncio.sleep(0.1)
        metrics = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics")
                .read()
                .decode()
            )
        )
        assert 'plantwire_ingest_dependency_up{dependency="database"' in metrics
        assert re.search(r'dependency_up\{dependency="database",worker="[^"]+"\} 0\.0', metrics)
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        stored = await wait_for_count(database_url, "SELECT count(*) FROM sample_num", 39, 30)
    assert stored == 39  # the birth's value and 38 data values, none lost, none doubled
