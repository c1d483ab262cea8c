"""Every distinct value is kept: several values of a metric within one millisecond (the
plantwire.ordinal property), replays that never double them, and refused values counted and
dead-lettered. Real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

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
