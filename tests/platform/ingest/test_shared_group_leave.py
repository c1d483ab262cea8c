"""Ingest workers of one shared subscription on a real Mosquitto (the project's configuration)
and a real PostgreSQL: a worker process stopped gracefully (SIGTERM, the command line's stop)
leaves the group, so the member that stays takes everything a third-party gateway publishes
after, its Will included; a worker process killed with SIGKILL keeps its session, whose share
of the traffic waits for it and is stored once it is back.

Mosquitto hands a shared subscription's messages to its members in turn, a disconnected member
whose session lives included: without the leave, about half of what follows the stop would wait
in the stopped worker's session (and be dropped when it expires)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plantwire_bus.mqtt import MqttClient, Will, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType, Topic, decode_state, state_topic
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

from .test_worker import query, shared_settings, until_rows

pytestmark = pytest.mark.backends("postgres")  # the broker's sessions under test, not storage

PLANTWIRE = Path(sys.executable).parent / "plantwire"
VALUES = 20  # DDATA messages published while one member is stopped


class Gateway:
    """A third-party Sparkplug gateway (no plantwire extension): births, then one value per
    DDATA; its Will is its NDEATH."""

    def __init__(self, group: str, mqtt_url: str, client_id: str) -> None:
        self.group, self.t0 = group, time.time_ns() // 1_000_000 - 60_000
        death = Payload(metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),))
        will = Will(str(Topic(group, MessageType.NDEATH, "GW")), encode_payload(death))
        self.client = MqttClient(parse_mqtt_url(mqtt_url), client_id, will=will, reconnect=False)
        self.seq = 0

    async def births(self) -> None:
        nbirth = Payload(
            timestamp=self.t0,
            seq=0,
            metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),),
        )
        count = Metric(
            name="Count", alias=1, datatype=DataType.Double, value=-1.0, timestamp=self.t0
        )
        dbirth = Payload(timestamp=self.t0, seq=1, metrics=(count,))
        await self.client.publish(
            str(Topic(self.group, MessageType.NBIRTH, "GW")), encode_payload(nbirth)
        )
        await self.client.publish(
            str(Topic(self.group, MessageType.DBIRTH, "GW", "M")), encode_payload(dbirth)
        )
        self.seq = 1

    async def values(self, n: int) -> set[tuple[int, float]]:
        """``n`` DDATA of one value each; the rows they make."""
        rows = set()
        for k in range(n):
            self.seq += 1
            ts = self.t0 + self.seq
            metric = Metric(alias=1, datatype=DataType.Double, value=float(k), timestamp=ts)
            payload = Payload(timestamp=ts, seq=self.seq % 256, metrics=(metric,))
            topic = str(Topic(self.group, MessageType.DDATA, "GW", "M"))
            await self.client.publish(topic, encode_payload(payload, omit_datatypes=True))
            rows.add((ts, float(k)))
        return rows


def _values_sql(group: str) -> str:
    return (
        "SELECT (extract(epoch FROM t.ts) * 1000)::bigint, t.value FROM sample_num t"
        f" JOIN series s ON s.id = t.series_id WHERE s.group_id = '{group}' AND t.value >= 0"
    )


async def _rows_until(database_url: str, group: str, n: int, timeout: float) -> list[Any]:
    """The value rows of ``group`` once there are ``n`` (or what there is after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while len(rows := await query(database_url, _values_sql(group))) < n:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return rows


@pytest.fixture
def settings(database_url: str, mqtt_url: str, unique: str) -> PlatformSettings:
    return shared_settings(database_url, mqtt_url, unique)


@pytest.fixture
def launch(settings: PlatformSettings) -> Iterator[Any]:
    """Start worker "a" as a process of the command line (``plantwire platform ingest``)."""
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        MQTT_URL=settings.mqtt_url,
        PLANTWIRE_HOST_ID=settings.host_id,
        PLANTWIRE_SHARED_GROUP=str(settings.shared_group),
        PLANTWIRE_CLIENT_ID=f"{settings.host_id}-a",  # IngestWorker(..., client_suffix="a")
        PLANTWIRE_BATCH_AGE_MS="50",
        PLANTWIRE_UNREGISTERED_NODES="admit",
    )
    started: list[subprocess.Popen[bytes]] = []

    async def start() -> subprocess.Popen[bytes]:
        async with MqttClient(parse_mqtt_url(settings.mqtt_url), f"{settings.host_id}-p") as probe:
            await probe.subscribe(state_topic(settings.host_id))
            command = [str(PLANTWIRE), "--log-level", "INFO", "platform", "ingest"]
            process = await asyncio.to_thread(
                subprocess.Popen, command, env=env, stderr=subprocess.PIPE
            )
            started.append(process)
            deadline = time.monotonic() + 25
            while True:  # STATE online comes after the subscriptions' SUBACKs
                message = await asyncio.wait_for(probe.next_message(), deadline - time.monotonic())
                if decode_state(message.payload)[0]:
                    return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


async def _other(settings: PlatformSettings, suffix: str) -> tuple[IngestWorker, Any, Any]:
    worker, stop = IngestWorker(settings, client_suffix=suffix), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 10)
    return worker, stop, task


async def test_a_worker_stopped_gracefully_leaves_its_group_to_the_other(
    launch: Any, settings: PlatformSettings, database_url: str, mqtt_url: str, unique: str
) -> None:
    """Fails on a worker that keeps its session when stopped (before this change): the
    values and the Will handed to it stay queued there and "b" stores about half of them."""
    group = f"G{unique}"
    a = await launch()
    b, stop_b, task_b = await _other(settings, "b")
    try:
        a.send_signal(signal.SIGTERM)
        _, log = await asyncio.to_thread(a.communicate, timeout=20)
        assert a.returncode == 0
        assert f"ingest {settings.host_id}-a left shared group" in log.decode()
        gateway = Gateway(group, mqtt_url, f"gw-{unique}")
        await gateway.client.connect()
        await gateway.births()
        truth = await gateway.values(VALUES)
        rows = await _rows_until(database_url, group, VALUES, 15)
        gateway.client.drop_connection()  # no DISCONNECT: the broker publishes the Will
        await gateway.client.disconnect()
        await until_rows(  # the Will reached the member that stayed
            database_url,
            f"SELECT died_at FROM sparkplug_node"
            f" WHERE group_id = '{group}' AND died_at IS NOT NULL",
            15,
        )
    finally:
        stop_b.set()
        await asyncio.wait_for(task_b, 15)
    assert {(int(ts), value) for ts, value in rows} == truth  # none lost
    assert len(rows) == VALUES  # none doubled
    assert b.stats.sparkplug_messages == 2 + VALUES + 1  # births, values, NDEATH: all to "b"
    assert await query(database_url, "SELECT count(*) FROM dead_letter") == [(0,)]


async def test_a_killed_worker_keeps_its_session_and_its_share_waits_for_it(
    launch: Any, settings: PlatformSettings, database_url: str, mqtt_url: str, unique: str
) -> None:
    """SIGKILL: no leave. The broker goes on handing the dead worker its share, which waits
    in its session; started again under its client id, the worker stores it, once."""
    group = f"G{unique}"
    a = await launch()
    b, stop_b, task_b = await _other(settings, "b")
    a_again: tuple[IngestWorker, Any, Any] | None = None
    try:
        async with MqttClient(parse_mqtt_url(mqtt_url), f"gw-{unique}") as client:
            gateway = Gateway(group, mqtt_url, f"gw-{unique}")
            gateway.client = client
            await gateway.births()  # both alive: stored, whoever takes them
            await until_rows(database_url, f"SELECT 1 FROM series WHERE group_id = '{group}'", 15)
            a.kill()
            await asyncio.to_thread(a.communicate, timeout=10)
            truth = await gateway.values(VALUES)
        taken_by_b = await _rows_until(database_url, group, VALUES, 3)
        a_again = await _other(settings, "a")  # the killed worker's client id again
        rows = await _rows_until(database_url, group, VALUES, 15)
    finally:
        stop_b.set()
        tasks = [task_b] if a_again is None else [task_b, a_again[2]]
        if a_again is not None:
            a_again[1].set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    assert 0 < len(taken_by_b) < VALUES  # the killed worker's share waited for it
    assert {(int(ts), value) for ts, value in rows} == truth
    assert len(rows) == VALUES
    assert a_again is not None
    took = [_ddata(w) for w in (b, a_again[0])]
    assert took[1] > 0 and sum(took) == VALUES  # each value taken once, by one of the two


def _ddata(worker: IngestWorker) -> int:
    taken = worker.metrics.registry.get_sample_value(
        "plantwire_ingest_messages_total", {"worker": worker.client_id, "type": "DDATA"}
    )
    return int(taken or 0)
