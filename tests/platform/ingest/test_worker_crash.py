"""An ingest worker process killed with SIGKILL mid-stream and started again loses and doubles
nothing: compared, row by row, with what the edge published."""

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

import psycopg
import pytest

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType, Topic, decode_state, state_topic

MESSAGES, METRICS = 400, 25
PLANTWIRE = Path(sys.executable).parent / "plantwire"


@pytest.fixture
def launch(database_url: str, mqtt_url: str, unique: str) -> Iterator[Any]:
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        MQTT_URL=mqtt_url,
        PLANTWIRE_HOST_ID=f"crash-{unique}",
        PLANTWIRE_BATCH_AGE_MS="50",
        PLANTWIRE_UNREGISTERED_NODES="admit",  # no registry: the host mechanics under test
    )
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [str(PLANTWIRE), "--log-level", "WARNING", "platform", "ingest"], env=env
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def online(probe: MqttClient, timeout: float = 20) -> None:
    """Wait for the host's STATE to say online (a fresh connection's retained message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await asyncio.wait_for(probe.next_message(), deadline - time.monotonic())
        if decode_state(message.payload)[0]:
            return
    raise TimeoutError


async def count(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM sample_num")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_sigkill_mid_stream_loses_and_doubles_nothing(
    launch: Any, database_url: str, mqtt_url: str, unique: str
) -> None:
    group, t0 = f"G{unique}", time.time_ns() // 1_000_000 - 600_000
    truth = {(f"S{i}", t0, -1.0) for i in range(METRICS)}
    messages = [
        (
            str(Topic(group, MessageType.NBIRTH, "GW")),
            encode_payload(
                Payload(
                    timestamp=t0,
                    seq=0,
                    metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),),
                )
            ),
        ),
        (
            str(Topic(group, MessageType.DBIRTH, "GW", "M")),
            encode_payload(
                Payload(
                    timestamp=t0,
                    seq=1,
                    metrics=tuple(
                        Metric(
                            name=f"S{i}",
                            alias=i,
                            datatype=DataType.Double,
                            value=-1.0,
                            timestamp=t0,
                        )
                        for i in range(METRICS)
                    ),
                )
            ),
        ),
    ]
    for k in range(MESSAGES):
        ts = t0 + 1 + k
        metrics = tuple(
            Metric(alias=i, datatype=DataType.Double, value=k + i / 100, timestamp=ts)
            for i in range(METRICS)
        )
        truth |= {(f"S{i}", ts, k + i / 100) for i in range(METRICS)}
        payload = Payload(timestamp=ts, seq=(2 + k) % 256, metrics=metrics)
        messages.append(
            (
                str(Topic(group, MessageType.DDATA, "GW", "M")),
                encode_payload(payload, omit_datatypes=True),
            )
        )

    address = parse_mqtt_url(mqtt_url)
    async with (
        MqttClient(address, f"probe-{unique}") as probe,
        MqttClient(address, f"edge-{unique}") as edge,
    ):
        await probe.subscribe(state_topic(f"crash-{unique}"))
        worker = launch()
        await online(probe)

        async def publish() -> None:
            for topic, payload in messages:
                await edge.publish(topic, payload)  # QoS 1: the broker holds it for the worker
                await asyncio.sleep(0.004)

        publisher = asyncio.create_task(publish())
        while (stored := await count(database_url)) < len(truth) // 4:
            await asyncio.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)  # mid-stream: no clean shutdown, no final commit
        worker.wait()
        assert not publisher.done() and 0 < stored < len(truth)
        await asyncio.sleep(0.5)  # the stream goes on while no worker runs
        launch()
        await online(probe)
        await asyncio.wait_for(publisher, 60)
        deadline = time.monotonic() + 30
        while await count(database_url) < len(truth) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT s.metric, (extract(epoch FROM t.ts) * 1000)::bigint, t.value"
            " FROM sample_num t JOIN series s ON s.id = t.series_id"
        )
        rows = [(m, int(ts), v) for m, ts, v in await cur.fetchall()]
    assert len(rows) == len(truth)  # nothing doubled
    assert set(rows) == truth  # nothing lost, nothing altered
