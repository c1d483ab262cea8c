"""The ingest worker against a real Mosquitto and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
import pytest

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, decode_payload, encode_payload
from plantwire_bus.topics import MessageType, Topic, decode_state, state_topic
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

WorkerFactory = Callable[..., AbstractAsyncContextManager[IngestWorker]]


@pytest.fixture
def start_worker(database_url: str, mqtt_url: str, unique: str) -> WorkerFactory:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[IngestWorker]:
        # most tests here exercise the host without a registry; identity has its own tests
        overrides.setdefault("unregistered_nodes", "admit")
        settings = PlatformSettings(
            database_url=database_url,
            mqtt_url=mqtt_url,
            host_id=f"host-{unique}",
            batch_age_ms=50,
            **overrides,
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

    return start


async def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(sql.encode())
        return await cur.fetchall()


async def until_rows(database_url: str, sql: str, timeout: float = 20) -> list[tuple[Any, ...]]:
    """The rows ``sql`` finds, once it finds any; fails after ``timeout`` s without."""
    deadline = time.monotonic() + timeout
    while not (rows := await query(database_url, sql)):
        assert time.monotonic() < deadline, f"not within {timeout} s: {sql}"
        await asyncio.sleep(0.05)
    return rows


def shared_settings(
    database_url: str, mqtt_url: str, unique: str, host: str = "host"
) -> PlatformSettings:
    """Settings of ingest workers of host ``<host>-<unique>`` sharing one subscription
    (group ``ingest-<unique>``), admitting any edge node (the host mechanics under test)."""
    return PlatformSettings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        host_id=f"{host}-{unique}",
        shared_group=f"ingest-{unique}",
        batch_age_ms=50,
        unregistered_nodes="admit",
    )


async def count(database_url: str, sql: str) -> int:
    return int((await query(database_url, sql))[0][0])


async def wait_for_count(database_url: str, sql: str, expected: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        n = await count(database_url, sql)
        if n >= expected:
            return n
        await asyncio.sleep(0.05)
    return n


TOTAL = (
    "SELECT (SELECT count(*) FROM sample_num) + (SELECT count(*) FROM sample_bool)"
    " + (SELECT count(*) FROM sample_text)"
)
STORED = (
    "SELECT s.device_id, s.metric, (extract(epoch FROM t.ts) * 1000)::bigint, t.value"
    " FROM series s JOIN sample_{} t ON t.series_id = s.id"
)


async def stored_rows(database_url: str) -> set[tuple[str, str, int, Any]]:
    out = set()
    for kind in ("num", "bool", "text"):
        for device, metric, ts, value in await query(database_url, STORED.format(kind)):
            out.add((device, metric, int(ts), value))
    return out


Truth = set[tuple[str, str, int, Any]]


def buffered_hour(group: str, t0: int) -> tuple[list[tuple[str, bytes]], Truth]:
    """Births, then an hour of buffered (historical) data every 10 s; and the rows it holds."""
    truth: Truth = set()
    nbirth = Payload(
        timestamp=t0, seq=0, metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),)
    )
    names = {
        1: ("Speed", DataType.Double),
        2: ("Running", DataType.Boolean),
        3: ("State/Mode", DataType.String),
    }
    first: dict[int, float | bool | str] = {1: 0.0, 2: False, 3: "AUTO"}
    dbirth = Payload(
        timestamp=t0,
        seq=1,
        metrics=tuple(
            Metric(name=n, alias=a, datatype=dt, value=first[a], timestamp=t0)
            for a, (n, dt) in names.items()
        ),
    )
    for a, (n, _) in names.items():
        truth.add(("M1", n, t0, first[a]))
    out = [
        (str(Topic(group, MessageType.NBIRTH, "GW1")), encode_payload(nbirth)),
        (str(Topic(group, MessageType.DBIRTH, "GW1", "M1")), encode_payload(dbirth)),
    ]
    data = str(Topic(group, MessageType.DDATA, "GW1", "M1"))
    for i in range(360):
        ts = t0 + 10_000 * (i + 1)
        metrics = [
            Metric(
                alias=1,
                datatype=DataType.Double,
                value=i * 0.25 + j,
                timestamp=ts + j,
                is_historical=True,
            )
            for j in range(8)
        ]
        metrics.append(
            Metric(
                alias=2,
                datatype=DataType.Boolean,
                value=i % 2 == 0,
                timestamp=ts,
                is_historical=True,
            )
        )
        if i % 60 == 0:
            metrics.append(
                Metric(
                    alias=3,
                    datatype=DataType.String,
                    value=f"MODE{i}",
                    timestamp=ts,
                    is_historical=True,
                )
            )
        for m in metrics:
            truth.add(("M1", names[m.alias or 0][0], m.timestamp or 0, m.value))
        payload = Payload(timestamp=ts + 10, seq=(2 + i) % 256, metrics=tuple(metrics))
        out.append((data, encode_payload(payload, omit_datatypes=True)))
    return out, truth


async def test_replaying_a_buffered_hour_twice_changes_nothing(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    group = f"G{unique}"
    t0 = time.time_ns() // 1_000_000 - 3_700_000
    messages, truth = buffered_hour(group, t0)
    async with (
        start_worker() as worker,
        MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge,
    ):
        for topic, payload in messages:
            await edge.publish(topic, payload)
        assert await wait_for_count(database_url, TOTAL, len(truth)) == len(truth)
        for _ in range(2):  # the same hour again, twice: births, then all data
            for topic, payload in messages:
                await edge.publish(topic, payload)
        deadline = time.monotonic() + 10
        while worker.stats.sparkplug_messages < 3 * len(messages) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    # the worker stopped cleanly: everything it took is committed
    assert worker.stats.sparkplug_messages == 3 * len(messages)
    assert worker.stats.rebirths_requested == 0
    assert await stored_rows(database_url) == truth
    assert await count(database_url, TOTAL) == len(truth)
    assert await count(database_url, "SELECT count(*) FROM dead_letter") == 0
    sessions = "SELECT count(*) FROM connectivity_session WHERE device_id = 'M1'"
    assert await count(database_url, sessions) == 1  # the replayed birth opens nothing new
    # the mode changes became state intervals, in time order
    modes = await query(
        database_url,
        "SELECT si.value FROM state_interval si JOIN series s ON s.id = si.series_id"
        " ORDER BY si.start_at",
    )
    assert [m[0] for m in modes] == ["AUTO"] + [f"MODE{i}" for i in range(0, 360, 60)]


async def test_malformed_messages_go_to_dead_letters(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    group = f"G{unique}"
    async with start_worker(), MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge:
        await edge.publish(f"spBv1.0/{group}/DDATA/GW1/M1", b"\x0a\xff\xff")  # junk, no birth
        await edge.publish(f"spBv1.0/{group}/NBIRTH/GW1", b"\x12\x05truncated")
        await edge.publish(f"spBv1.0/{group}/BOGUS/GW1", b"")
        # more than the broker lets through unacknowledged: each must be acknowledged too
        await asyncio.gather(
            *(edge.publish_nowait(f"spBv1.0/{group}/DDATA/GW{i}", b"x") for i in range(1100))
        )
        n = await wait_for_count(database_url, "SELECT count(*) FROM dead_letter", 1103)
    assert n == 1103
    got = await query(database_url, "SELECT reason, length(payload) FROM dead_letter ORDER BY id")
    assert [r[0] for r in got[:4]] == ["undecodable", "undecodable", "bad_topic", "bad_topic"]
    assert [r[1] for r in got[:3]] == [3, 11, 0]  # the raw bytes are kept


async def test_state_is_published_retained(
    start_worker: WorkerFactory, mqtt_url: str, unique: str
) -> None:
    async with MqttClient(parse_mqtt_url(mqtt_url), f"probe-{unique}") as probe:
        async with start_worker() as worker:
            await probe.subscribe(state_topic(worker.settings.host_id))
            message = await asyncio.wait_for(probe.next_message(), 5)
            online, ts = decode_state(message.payload)
            assert online and message.retain and ts > 0
        late = await asyncio.wait_for(probe.next_message(), 5)  # a clean stop says offline
        assert decode_state(late.payload)[0] is False


async def test_seq_gap_triggers_exactly_one_rebirth_request(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    group = f"G{unique}"
    t0 = time.time_ns() // 1_000_000
    address = parse_mqtt_url(mqtt_url)
    async with (
        start_worker(rebirth_holdoff_s=0.05),  # only the gap logic keeps it to one
        MqttClient(address, f"edge-{unique}") as edge,
    ):
        await edge.subscribe(str(Topic(group, MessageType.NCMD, "GW1")))
        messages, _ = buffered_hour(group, t0)
        seqs = [decode_payload(p).seq for _, p in messages[:20]]
        assert seqs == list(range(20))
        for topic, payload in messages[:10] + messages[11:20]:  # seq 10 is lost
            await edge.publish(topic, payload)
        command = await asyncio.wait_for(edge.next_message(), 10)
        rebirth = decode_payload(command.payload).metrics
        assert [(m.name, m.value) for m in rebirth] == [("Node Control/Rebirth", True)]
        for topic, payload in messages[20:40]:  # more data, no new gap
            await edge.publish(topic, payload)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(edge.next_message(), 1.5)
    events = await query(
        database_url, "SELECT kind FROM event WHERE kind IN ('seq_gap', 'rebirth_request')"
    )
    assert sorted(e[0] for e in events) == ["rebirth_request", "seq_gap"]


async def test_metrics_endpoint_and_spec_strict_mode(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    group = f"G{unique}"
    messages, _ = buffered_hour(group, time.time_ns() // 1_000_000 - 3_700_000)
    async with (
        start_worker(spec_strict=True, metrics_port=0) as worker,
        MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge,
    ):
        for topic, payload in messages[:50]:
            await edge.publish(topic, payload)
        await edge.publish(f"spBv1.0/{group}/DDATA/GW1/NOBODY", messages[5][1])
        expected = 3 + sum(len(decode_payload(p).metrics) for _, p in messages[2:50])
        assert await wait_for_count(database_url, TOTAL, expected) == expected
        await wait_for_count(database_url, "SELECT count(*) FROM dead_letter", 1)
        await asyncio.sleep(0.2)
        assert worker.metrics_port
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )

    def value(name: str, **labels: str) -> float:
        selector = "".join(f'.*{k}="{v}"' for k, v in labels.items())
        match = re.search(rf"^{name}{{{selector}.*}} (\S+)$", text, re.M)
        assert match, name
        return float(match.group(1))

    assert value("plantwire_ingest_samples_total") == expected
    assert value("plantwire_ingest_dead_letters_total", reason="no_device_birth") == 1
    assert value("plantwire_ingest_messages_total", type="DDATA") == 49
    assert value("plantwire_ingest_batch_seconds_count") >= 1
    assert (
        "plantwire_ingest_source_lag_seconds" in text
        and "plantwire_ingest_rebirth_requests_total" in text
    )


async def test_a_birth_from_1970_does_not_stall_the_worker(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    """A PLC with a reset clock sends births stamped at 1 ms after the epoch: they are stored,
    their absurd samples are dead letters, and the worker goes on taking data at once (it
    once tried to mark every minute since the epoch for re-rolling-up)."""
    group, now = f"E{unique}", int(time.time() * 1000)
    metrics = (
        Metric(name="Temp", alias=1, datatype=DataType.Double, value=1.0, timestamp=now),
        Metric(name="Pressure", alias=2, datatype=DataType.Double, value=2.0, timestamp=1),
    )
    async with start_worker(), MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge:
        await edge.publish(f"spBv1.0/{group}/NBIRTH/N", encode_payload(Payload(timestamp=1, seq=0)))
        birth = Payload(timestamp=1, seq=1, metrics=metrics)
        await edge.publish(f"spBv1.0/{group}/DBIRTH/N/D", encode_payload(birth))
        good = Metric(alias=1, datatype=DataType.Double, value=7.5, timestamp=now + 1)
        data = Payload(timestamp=now + 1, seq=2, metrics=(good,))
        await edge.publish(f"spBv1.0/{group}/DDATA/N/D", encode_payload(data))
        n = await wait_for_count(
            database_url, "SELECT count(*) FROM sample_num WHERE value = 7.5", 1, timeout=5
        )
    reasons = await query(database_url, "SELECT reason, detail FROM dead_letter")
    assert n == 1, reasons
    assert [r[0] for r in reasons] == ["absurd_timestamp"]


async def test_an_unexpected_error_is_a_dead_letter_without_partial_rows(
    start_worker: WorkerFactory,
    database_url: str,
    mqtt_url: str,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug met halfway through a message (here: a failure injected after its first row)
    keeps none of its rows, stores it as an ``internal_error`` dead letter and leaves the
    worker taking the next message."""
    from plantwire_platform.ingest import batch as batch_module

    real_add_num = batch_module.Batch.add_num

    def add_num(
        self: batch_module.Batch, prefix: bytes, ts: int, value: float | None, ordinal: int = 0
    ) -> None:
        real_add_num(self, prefix, ts, value, ordinal)
        if value == 13.0:
            raise RuntimeError("injected after the row was added")

    monkeypatch.setattr(batch_module.Batch, "add_num", add_num)
    group, now = f"I{unique}", int(time.time() * 1000)
    birth = (
        Metric(name="A", alias=1, datatype=DataType.Int32, value=0, timestamp=now),
        Metric(name="B", alias=2, datatype=DataType.Int32, value=0, timestamp=now),
    )

    def data(seq: int, a: int, b: int) -> bytes:
        metrics = (
            Metric(alias=1, datatype=DataType.Int32, value=a, timestamp=now + seq),
            Metric(alias=2, datatype=DataType.Int32, value=b, timestamp=now + seq),
        )
        return encode_payload(Payload(timestamp=now + seq, seq=seq, metrics=metrics))

    async with start_worker(), MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge:
        await edge.publish(
            f"spBv1.0/{group}/NBIRTH/N", encode_payload(Payload(timestamp=now, seq=0))
        )
        dbirth = Payload(timestamp=now, seq=1, metrics=birth)
        await edge.publish(f"spBv1.0/{group}/DBIRTH/N/D", encode_payload(dbirth))
        await edge.publish(f"spBv1.0/{group}/DDATA/N/D", data(2, 12, 13))  # fails at B
        await edge.publish(f"spBv1.0/{group}/DDATA/N/D", data(3, 14, 15))
        await wait_for_count(database_url, "SELECT count(*) FROM sample_num WHERE value = 15", 1)
    values = await query(database_url, "SELECT value FROM sample_num WHERE value > 0 ORDER BY 1")
    assert values == [(14.0,), (15.0,)]  # nothing of the failed message, all of the next
    dead = await query(database_url, "SELECT reason, detail FROM dead_letter")
    assert dead == [("internal_error", "RuntimeError: injected after the row was added")]


async def test_state_announce_failing_during_an_outage_is_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Re-announcing STATE after a reconnect may fail if the broker drops again at once: the
    failure is logged (it used to surface as 'Task exception was never retrieved')."""

    class DroppingClient:
        async def publish(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("broker gone again")

    worker = IngestWorker(PlatformSettings(database_url="postgresql:///unused"))
    caplog.set_level("INFO", logger="plantwire_platform.ingest.worker")
    worker._announce(DroppingClient())  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert "STATE online not published: broker gone again" in caplog.text
    assert not worker._tasks
