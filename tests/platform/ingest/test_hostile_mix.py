"""The mixed hostile run of issue 13: about 10,000 messages through a real Mosquitto into a
running worker, valid data of a registered edge node interleaved at random with hostile
traffic of every kind. Every valid sample is stored, exactly once; every malformed message is
exactly one dead letter with its reason."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry

from .test_worker import WorkerFactory, query, start_worker

__all__ = ["start_worker"]  # the fixture

pytestmark = pytest.mark.e2e

VALID_MESSAGES = 300
HOSTILE_MESSAGES = 9_700
ALIASES = {1: DataType.Double, 2: DataType.Double, 3: DataType.Int32, 4: DataType.Boolean}
REGISTRY = """
[[enterprises]]
code = "{group}"
uscc = "91110000MA0000000X"
name = "Hostile Mix Works"

[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "N"

[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"
processes = [
  {{ code = "OP10", name = "Turning", is_key = true, key_reason = "tolerance", equipment = ["D"] }},
]

[[enterprises.sites.equipment]]
code = "D"
name = "Lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
"""


async def valid_stored(database_url: str, group: str, now: int) -> set[tuple[str, int, Any]]:
    """The samples of device N/D stored on the even milliseconds from ``now`` on."""
    stored = await query(
        database_url,
        "SELECT s.metric, (extract(epoch FROM t.ts) * 1000)::bigint, t.value"
        " FROM series s JOIN sample_num t ON t.series_id = s.id"
        f" WHERE s.group_id = '{group}' AND s.edge_node_id = 'N' AND s.device_id = 'D'",
    )
    flags = await query(
        database_url,
        "SELECT s.metric, (extract(epoch FROM t.ts) * 1000)::bigint, t.value"
        " FROM series s JOIN sample_bool t ON t.series_id = s.id"
        f" WHERE s.group_id = '{group}' AND s.device_id = 'D'",
    )
    return {(m, int(ts), v) for m, ts, v in stored + flags if int(ts) % 2 == 0 and int(ts) >= now}


def data(seq: int, ts: int, metrics: list[tuple[int, Any, int]], kind: str = "") -> bytes:
    """A DDATA payload written field by field: (alias, value, timestamp) per metric."""
    pb = PbPayload(timestamp=ts, seq=seq)
    for alias, value, mts in metrics:
        m = pb.metrics.add()
        m.alias, m.timestamp = alias, mts
        if kind == "mismatch":
            m.string_value = str(value)
        elif isinstance(value, bool):
            m.boolean_value = value
        elif isinstance(value, int):
            m.int_value = value & 0xFFFFFFFF
        else:
            m.double_value = value
    return pb.SerializeToString()


def valid_values(i: int) -> list[tuple[int, Any]]:
    return [(1, i + 0.25), (2, -i - 0.5), (3, i * 7 - 500), (4, i % 3 == 0)]


def hostile(rng: random.Random, group: str, now: int) -> tuple[str, bytes, str | None]:
    """One hostile message: (topic, payload, the dead letter reason expected or None)."""
    node = f"spBv1.0/{group}/DDATA/N/D"
    kind = rng.choice(
        ("random", "truncated", "unborn", "seq", "mismatch", "absurd", "unknown_birth")
    )
    ts = now + rng.randrange(0, 60_000)
    values = [(a, rng.uniform(-1e6, 1e6), ts) for a in (1, 2)]
    if kind == "random":
        while True:
            noise = rng.randbytes(rng.randrange(1, 300))
            try:
                PbPayload.FromString(noise)
            except Exception:  # noqa: BLE001 - wanted: bytes that are not a payload
                return node, noise, "undecodable"
    if kind == "truncated":
        whole = data(rng.randrange(256), ts, values)
        while True:
            cut = whole[: rng.randrange(1, len(whole))]
            try:
                PbPayload.FromString(cut)
            except Exception:  # noqa: BLE001 - wanted: bytes that do not parse
                return node, cut, "undecodable"
    if kind == "unborn":
        return (
            node,
            data(rng.randrange(256), ts, [(rng.randrange(50, 999), 1.5, ts)]),
            ("unknown_metric"),
        )
    if kind == "seq":  # well-formed data at an odd time, out of sequence: stored, not refused
        return node, data(rng.randrange(256), ts, [(2, 0.125, ts | 1)]), None
    if kind == "mismatch":
        return node, data(rng.randrange(256), ts, values, "mismatch"), "type_mismatch"
    if kind == "absurd":
        bad = rng.choice((631_152_000_000, now + 400 * 86_400_000))
        return node, data(rng.randrange(256), ts, [(1, 2.5, bad)]), "absurd_timestamp"
    unknown = f"X{rng.randrange(50)}"
    birth = Payload(
        timestamp=ts,
        seq=0,
        metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),),
    )
    # an edge node the registry does not know: the broker does not deliver it to the worker
    return f"spBv1.0/{group}/NBIRTH/{unknown}", encode_payload(birth), None


async def test_valid_data_survives_mixed_hostile_traffic(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    rng = random.Random(13)
    group = f"H{unique}"
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(conn, parse_registry(REGISTRY.format(group=group)))
    now = (int(time.time() * 1000) // 2) * 2  # even: valid samples on even milliseconds
    births = [
        (f"spBv1.0/{group}/NBIRTH/N", encode_payload(Payload(timestamp=now - 1000, seq=0))),
        (
            f"spBv1.0/{group}/DBIRTH/N/D",
            encode_payload(
                Payload(
                    timestamp=now - 1000,
                    seq=1,
                    metrics=tuple(
                        Metric(name=f"M{a}", alias=a, datatype=dt, is_null=True)
                        for a, dt in ALIASES.items()
                    ),
                )
            ),
        ),
    ]
    valid: list[tuple[str, bytes]] = []
    expected: set[tuple[str, int, Any]] = set()
    for i in range(VALID_MESSAGES):
        ts = now + i * 2
        metrics = [(a, v, ts) for a, v in valid_values(i)]
        valid.append((f"spBv1.0/{group}/DDATA/N/D", data((i + 2) % 256, ts, metrics)))
        expected |= {(f"M{a}", ts, float(v) if not isinstance(v, bool) else v) for a, v in
                     valid_values(i)}  # fmt: skip
    bad = [hostile(rng, group, now) for _ in range(HOSTILE_MESSAGES)]
    order = [("valid", m) for m in valid] + [("hostile", (t, p)) for t, p, _ in bad]
    rng.shuffle(order)
    queue = iter(valid)  # valid messages keep their own order among the hostile ones
    stream = [next(queue) if kind == "valid" else m for kind, m in order]
    # tampered copies of valid messages: their times, other values, sent after them
    tampered = rng.sample(range(VALID_MESSAGES), 20)
    for i in tampered:
        ts = now + i * 2
        stream.append((f"spBv1.0/{group}/DDATA/N/D", data(rng.randrange(256), ts, [(1, -1.0, ts)])))
    async with (
        start_worker(unregistered_nodes="refuse"),
        MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}", max_inflight=1000) as edge,
    ):
        for topic, payload in births:
            await edge.publish(topic, payload)
        started = time.monotonic()
        for n, (topic, payload) in enumerate(stream):
            edge.publish_nowait(topic, payload).add_done_callback(lambda f: f.exception())
            if n % 100 == 99:  # about 1,000 messages a second
                await asyncio.sleep(max(0.0, started + (n + 1) / 1000 - time.monotonic()))
        refused = Counter(reason for _, _, reason in bad if reason is not None)
        # the dead letters and every valid sample stored, while the worker runs (what it
        # holds uncommitted when it stops is left to the broker, not stored)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = await query(database_url, "SELECT count(*) FROM dead_letter")
            got = await valid_stored(database_url, group, now)
            if rows[0][0] >= sum(refused.values()) and got >= expected:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # anything more that was coming
    got = await valid_stored(database_url, group, now)
    assert got == expected, f"{len(expected - got)} valid samples missing"
    rows = await query(database_url, "SELECT reason, detail FROM dead_letter")
    letters = Counter(reason for reason, _ in rows if reason != "conflicting_value")
    assert letters == refused, f"dead letters {letters}, hostile {refused}"
    # the births of unregistered nodes never reach the worker: it subscribes to registered
    # nodes' topics only (docs/security.md)
    assert "unregistered_node" not in letters
    assert await query(database_url, f"SELECT 1 FROM series WHERE edge_node_id <> 'N'"
                       f" OR group_id <> '{group}'") == []  # fmt: skip
    conflicts = [int(detail.split(" ", 1)[0]) for r, detail in rows if r == "conflicting_value"]
    assert sum(conflicts) == len(tampered)  # refused, counted, never silently dropped
