"""Host state shared through the database: what one worker learns from a birth, another uses
for the data; rebirth requests and seq ledgers are agreed between workers (real PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from plantwire_bus.mqtt import Message
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_platform.ingest.batch import Batch
from plantwire_platform.ingest.intake import IngestStats, Intake
from plantwire_platform.ingest.metrics import IngestMetrics
from plantwire_platform.ingest.shared_state import SharedState
from plantwire_platform.ingest.writer import BatchWriter
from plantwire_platform.settings import PlatformSettings

NOW = time.time_ns() // 1_000_000


@dataclass
class Worker:
    intake: Intake
    writer: BatchWriter
    conn: psycopg.AsyncConnection[Any]


@pytest.fixture
async def workers(database_url: str) -> AsyncIterator[tuple[Worker, Worker]]:
    settings = PlatformSettings(
        database_url=database_url,
        shared_group="g",
        reorder_wait_ms=60_000,
        unregistered_nodes="admit",  # no registry: the host mechanics under test
    )
    conns = [await psycopg.AsyncConnection.connect(database_url, autocommit=True) for _ in range(4)]
    try:
        out = []
        for name, (control, data) in zip("ab", (conns[:2], conns[2:]), strict=True):
            shared = SharedState(control, name)
            await shared.start()
            intake = Intake(shared, settings, IngestMetrics(name), IngestStats())
            out.append(Worker(intake, BatchWriter(data, name), data))
        yield out[0], out[1]
    finally:
        for conn in conns:
            await conn.close()


def message(topic: str, payload: Payload, mid: int = 1, omit: bool = False) -> Message:
    return Message(topic, encode_payload(payload, omit_datatypes=omit), 1, False, mid)


NBIRTH = message(
    "spBv1.0/G/NBIRTH/N",
    Payload(
        timestamp=NOW - 1000,
        seq=0,
        metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=0),),
    ),
)
DBIRTH = message(
    "spBv1.0/G/DBIRTH/N/D",
    Payload(
        timestamp=NOW - 1000,
        seq=1,
        metrics=(
            Metric(name="Speed", alias=7, datatype=DataType.Double, value=1.0),
            Metric(name="Count", alias=8, datatype=DataType.UInt16, value=3),
        ),
    ),
)


def ddata(seq: int, value: float) -> Message:
    metrics = (
        Metric(alias=7, datatype=DataType.Double, value=value, timestamp=NOW + seq),
        Metric(alias=8, datatype=DataType.UInt16, value=seq, timestamp=NOW + seq),
    )
    return message(
        "spBv1.0/G/DDATA/N/D",
        Payload(timestamp=NOW + seq, seq=seq, metrics=metrics),
        seq,
        omit=True,
    )


async def rows(worker: Worker, query: str) -> list[tuple[Any, ...]]:
    cur = await worker.conn.execute(query.encode())
    return await cur.fetchall()


async def test_data_is_resolved_with_a_birth_another_worker_took(
    workers: tuple[Worker, Worker],
) -> None:
    a, b = workers
    births = Batch()
    for m in (NBIRTH, DBIRTH):
        assert await a.intake.take(m, births, time.monotonic())
    await a.writer.write(births)
    data = Batch()
    assert await b.intake.take(ddata(2, 4.5), data, time.monotonic())  # b never saw a birth
    assert not data.dead_letters
    await b.writer.write(data)
    got = await rows(
        b,
        "SELECT s.metric, t.value FROM sample_num t JOIN series s ON s.id = t.series_id"
        " WHERE t.ts > now() - interval '1 hour' ORDER BY t.ts, s.metric",
    )
    assert ("Count", 2.0) in got and ("Speed", 4.5) in got
    stored_by = await rows(a, "SELECT device_id, worker FROM sparkplug_birth ORDER BY id")
    assert stored_by == [("", "a"), ("D", "a")]


async def test_data_waits_for_a_birth_still_on_its_way(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    early = Batch()
    since = time.monotonic()
    assert not await b.intake.take(ddata(2, 1.5), early, since)  # no birth anywhere yet
    b.intake.park(ddata(2, 1.5), since)
    assert early.messages == [] and early.dead_letters == []
    births = Batch()
    for m in (NBIRTH, DBIRTH):
        await a.intake.take(m, births, time.monotonic())
    later = Batch()
    await b.intake.refresh()
    await b.intake.retry_parked(later)
    assert not b.intake.parked and len(later.messages) == 1 and later.samples == 2


async def test_one_rebirth_request_between_workers(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    claims = [
        await a.intake.state.claim_rebirth("G", "N", 30, "seq_gap"),
        await b.intake.state.claim_rebirth("G", "N", 30, "seq_gap"),
        await a.intake.state.claim_rebirth("G", "N", 30, "unknown_metric"),
        await b.intake.state.claim_rebirth("G", "OTHER", 30, "no_node_birth"),
    ]
    assert claims == [True, False, False, True]
    assert await rows(a, "SELECT count(*) FROM event WHERE kind = 'rebirth_request'") == [(2,)]


async def test_seq_ledger_merged_from_two_workers(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    births = Batch()
    for m in (NBIRTH, DBIRTH):
        await a.intake.take(m, births, time.monotonic())
    await a.writer.write(births)
    node_birth = NOW - 1000
    a_saw = [(node_birth, 0, True)] + [(node_birth, s, False) for s in (1, 3, 5)]
    b_saw = [(node_birth, s, False) for s in (2, 4, 6)]
    assert await a.intake.state.merge_seqs({("G", "N"): a_saw}, 30) == []
    assert await b.intake.state.merge_seqs({("G", "N"): b_saw}, 30) == []
    assert await rows(a, "SELECT seq_expected, seq_gaps FROM sparkplug_node") == [(7, 0)]
    gap = [(node_birth, 9, False)]  # 7 and 8 never come
    assert await a.intake.state.merge_seqs({("G", "N"): gap}, 0) == [("G", "N")]
    assert await rows(a, "SELECT seq_expected, seq_gaps FROM sparkplug_node") == [(10, 1)]
