"""BatchWriter, the shared host state and state intervals against a real PostgreSQL."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import pytest

from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType
from plantwire_platform.ingest.batch import Batch, DeadLetter, Problems, ms_to_datetime
from plantwire_platform.ingest.host import (
    Generation,
    Route,
    TimeWindow,
    decode_data,
    parse_data,
    read_birth,
    read_death,
)
from plantwire_platform.ingest.shared_state import SharedState, birth_samples
from plantwire_platform.ingest.writer import BatchWriter

NOW = time.time_ns() // 1_000_000
WINDOW = TimeWindow.around(NOW)
MODES = ["AUTO", "MANUAL", "MDI", "SETUP"]


@dataclass
class Store:
    conn: psycopg.AsyncConnection[Any]
    shared: SharedState
    writer: BatchWriter


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as data,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as control,
    ):
        shared = SharedState(control, "test")
        await shared.start()
        yield Store(data, shared, BatchWriter(data, "test"))


async def born(store: Store, device: str = "D1") -> Generation:
    node = read_birth(
        Route(MessageType.NBIRTH, "G", "N", ""),
        Payload(
            timestamp=NOW - 10_000,
            seq=0,
            metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=1),),
        ),
        NOW,
    )
    await store.shared.store_birth(node)
    birth = read_birth(
        Route(MessageType.DBIRTH, "G", "N", device),
        Payload(
            timestamp=NOW - 10_000,
            seq=1,
            metrics=(
                Metric(name="Speed", alias=1, datatype=DataType.Double, value=0.0),
                Metric(name="State/Mode", alias=2, datatype=DataType.String, value="AUTO"),
                Metric(name="Alarms/Hot", alias=3, datatype=DataType.Boolean, value=False),
            ),
        ),
        NOW,
    )
    return await store.shared.store_birth(birth)


def batch_of(gen: Generation, *metrics: Metric) -> Batch:
    pb, _, pts = parse_data(
        encode_payload(Payload(timestamp=NOW, seq=2, metrics=metrics), omit_datatypes=True)
    )
    batch = Batch()
    assert decode_data(pb, gen, WINDOW, pts, batch, Problems(), True)
    return batch


async def scalar(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    cur = await conn.execute(query.encode())
    row = await cur.fetchone()
    return row[0] if row else None


async def test_redelivered_samples_are_stored_once(store: Store) -> None:
    gen = await born(store)
    speeds = [
        Metric(alias=1, datatype=DataType.Double, value=float(i), timestamp=NOW - 5000 + i)
        for i in range(50)
    ]
    first = await store.writer.write(batch_of(gen, *speeds[:30]))
    assert (first.inserted, first.careful) == (30, False)
    again = await store.writer.write(batch_of(gen, *speeds[:30]))  # the same message again
    assert (again.inserted, again.careful) == (0, True)
    mixed = await store.writer.write(batch_of(gen, *speeds[20:]))  # overlaps by 10
    assert mixed.inserted == 20
    assert await scalar(store.conn, "SELECT count(*) FROM sample_num") == 50
    assert await scalar(store.conn, "SELECT sum(value) FROM sample_num") == sum(range(50))
    within = batch_of(gen, speeds[0], speeds[0])  # a duplicate inside one batch
    assert (await store.writer.write(within)).inserted == 0


async def test_state_intervals_follow_samples_in_any_order(store: Store) -> None:
    gen = await born(store)
    rng = random.Random(7)
    changes = [(NOW - 60_000 + 1000 * i, rng.choice(MODES)) for i in range(40)]
    shuffled = changes[:]
    rng.shuffle(shuffled)
    for start in range(0, 40, 8):  # late, repeated and out-of-order batches
        part = shuffled[start : start + 8] + shuffled[: start // 2]
        metrics = [
            Metric(alias=2, datatype=DataType.String, value=v, timestamp=ts) for ts, v in part
        ]
        await store.writer.write(batch_of(gen, *metrics))
    # independent truth: the samples in time order, consecutive repeats merged
    expected: list[tuple[int, int | None, str]] = []
    for ts, value in sorted(changes):
        if not expected or expected[-1][2] != value:
            if expected:
                expected[-1] = (expected[-1][0], ts, expected[-1][2])
            expected.append((ts, None, value))
    cur = await store.conn.execute(
        "SELECT start_at, end_at, value FROM state_interval si JOIN series s ON s.id = si.series_id"
        " WHERE s.metric = 'State/Mode' AND start_at > %s ORDER BY start_at",
        (ms_to_datetime(NOW - 61_000),),
    )
    got = await cur.fetchall()
    assert got == [
        (ms_to_datetime(a), None if b is None else ms_to_datetime(b), v) for a, b, v in expected
    ]


async def test_deaths_end_sessions_states_and_mark_stale(store: Store) -> None:
    gen = await born(store)
    birth = read_birth(
        Route(MessageType.DBIRTH, "G", "N", "D1"),
        Payload(
            timestamp=NOW - 10_000,
            metrics=(Metric(name="State/Mode", alias=2, datatype=DataType.String, value="AUTO"),),
        ),
        NOW,
    )
    batch = Batch()
    for target, ts, value, _ in birth_samples(birth, gen):
        batch.add_other(target, ts, value)
    await store.writer.write(batch)
    stale_will = read_death(
        Route(MessageType.NDEATH, "G", "N", ""),
        Payload(metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),)),
        NOW - 5000,
    )
    assert await store.shared.record_death(stale_will) is None  # bdSeq 0: an older connection
    assert (
        await scalar(
            store.conn, "SELECT count(*) FROM connectivity_session WHERE offline_at IS NULL"
        )
        == 2
    )
    will = read_death(
        Route(MessageType.NDEATH, "G", "N", ""),
        Payload(metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=1),)),
        NOW - 5000,
    )
    assert await store.shared.record_death(will) is not None
    assert (
        await scalar(
            store.conn, "SELECT count(*) FROM connectivity_session WHERE offline_at IS NULL"
        )
        == 0
    )
    assert await scalar(store.conn, "SELECT count(*) FROM series WHERE stale_since IS NULL") == 0
    end = await scalar(store.conn, "SELECT end_at FROM state_interval")
    assert end == ms_to_datetime(NOW - 5000)
    kinds = await store.conn.execute("SELECT kind FROM event ORDER BY id")
    assert [r[0] for r in await kinds.fetchall()] == ["node_birth", "device_birth", "node_death"]
    reborn = await born(store)  # a new connection: fresh sessions, nothing stale
    assert reborn.birth_id == gen.birth_id  # same birth timestamp: the same birth
    assert (
        await scalar(store.conn, "SELECT count(*) FROM series WHERE stale_since IS NOT NULL") == 0
    )


async def test_events_and_dead_letters(store: Store) -> None:
    gen = await born(store)
    batch = batch_of(
        gen,
        Metric(alias=3, datatype=DataType.Boolean, value=True, timestamp=NOW - 100),
        Metric(alias=3, datatype=DataType.Boolean, value=False, timestamp=NOW - 50),
    )
    batch.dead_letters.append(
        DeadLetter("spBv1.0/G/DDATA/N/\0", "bad_topic", "nul \0 here", b"\x00\xff")
    )
    await store.writer.write(batch)
    await store.writer.write(batch)  # again: nothing doubles
    cur = await store.conn.execute(
        "SELECT kind, name, value, ts FROM event WHERE kind = 'alarm' ORDER BY ts"
    )
    assert await cur.fetchall() == [
        ("alarm", "Alarms/Hot", "True", ms_to_datetime(NOW - 100)),
        ("alarm", "Alarms/Hot", "False", ms_to_datetime(NOW - 50)),
    ]
    cur = await store.conn.execute("SELECT topic, detail, payload, worker FROM dead_letter")
    letters = await cur.fetchall()
    assert letters[0] == ("spBv1.0/G/DDATA/N/\ufffd", "nul \ufffd here", b"\x00\xff", "test")
    assert len(letters) == 2  # dead letters are records of receipts, one per delivery


def test_ms_to_datetime_is_exact() -> None:
    assert ms_to_datetime(1_767_225_600_123) == datetime.fromisoformat(
        "2026-01-01T00:00:00.123+00:00"
    )
