"""Old days of numeric samples made compact without loss: packed on plain PostgreSQL (moved out
of their partition), compressed chunks on TimescaleDB; read back through sample_num_all, merged
when late samples come, never doubled by replays (real PostgreSQL and TimescaleDB)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType
from plantwire_platform.ingest.batch import Batch, Problems, ms_to_datetime
from plantwire_platform.ingest.host import (
    Generation,
    Route,
    TimeWindow,
    decode_data,
    parse_data,
    read_birth,
)
from plantwire_platform.ingest.shared_state import SharedState
from plantwire_platform.ingest.writer import BatchWriter
from plantwire_platform.storage.partitions import MaintenanceReport, maintain

DAY = 86_400_000
NOW = time.time_ns() // 1_000_000


def batch_of(gen: Generation, points: list[tuple[int, int, float]]) -> Batch:
    metrics = tuple(
        Metric(alias=a, datatype=DataType.Double, value=v, timestamp=ts) for a, ts, v in points
    )
    pb, _, pts = parse_data(
        encode_payload(Payload(timestamp=NOW, metrics=metrics), omit_datatypes=True)
    )
    batch = Batch()
    assert decode_data(pb, gen, TimeWindow.around(NOW), pts, batch, Problems(), True)
    return batch


async def rows(
    conn: psycopg.AsyncConnection[Any], sql: str, params: tuple[Any, ...] | None = None
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql.encode(), params)
    return await cur.fetchall()


async def compact(database_url: str, now: datetime) -> MaintenanceReport:
    """One maintenance pass that packs (plain) or compresses (TimescaleDB) days over 1 day old."""
    return await maintain(
        database_url, pack_after_days=1, compress_after_days=1, policies=True, now=now
    )


async def compressed_chunks(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    """(range_start, is_compressed) of the sample_num chunks, oldest first."""
    return await rows(
        conn,
        "SELECT range_start, is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'sample_num' ORDER BY 1",
    )


async def test_packed_days_read_back_merge_and_never_double(
    database_url: str, backend: str
) -> None:
    rng = random.Random(3)
    today = NOW // DAY * DAY
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as control,
    ):
        shared = SharedState(control, "t")
        await shared.start()
        birth = read_birth(
            Route(MessageType.DBIRTH, "G", "N", "D"),
            Payload(
                timestamp=today - 5 * DAY,
                metrics=tuple(
                    Metric(name=f"M{a}", alias=a, datatype=DataType.Double, value=0.0)
                    for a in (1, 2)
                ),
            ),
            NOW,
        )
        gen = await shared.store_birth(birth)
        sid = {a: gen.by_alias[a].series_id for a in (1, 2)}
        truth: dict[tuple[int, int], float] = {}

        def points(n: int, lo: int, hi: int) -> list[tuple[int, int, float]]:
            out = [
                (rng.choice((1, 2)), rng.randrange(lo, hi), round(rng.uniform(-9, 9), 2))
                for _ in range(n)
            ]
            for a, ts, v in out:
                truth.setdefault((sid[a], ts), v)
            return out

        writer = BatchWriter(conn, "t", pack_after_days=1)
        old = points(600, today - 4 * DAY, today - DAY)  # three days back: packable
        await writer.write(batch_of(gen, old))
        await writer.write(batch_of(gen, points(50, today, NOW)))  # today stays as rows
        now = datetime.fromtimestamp(NOW / 1000, UTC)
        report = await compact(database_url, now)
        timescale = backend == "timescaledb"
        assert report.packed_rows == (0 if timescale else 600)
        if timescale:  # the three old days' chunks compressed, today's not
            chunks = await compressed_chunks(conn)
            assert [c[1] for c in chunks] == [True, True, True, False]
            assert report.compressed_chunks == 3

        async def everything() -> dict[tuple[int, int], float]:
            got = await rows(
                conn,
                "SELECT series_id, (extract(epoch FROM ts) * 1000)::bigint, value"
                " FROM sample_num_all",
            )
            assert len(got) == len({(s, t) for s, t, _ in got})  # no doubles
            return {(s, int(t)): v for s, t, v in got}

        assert await everything() == truth
        hot = await rows(
            conn, "SELECT count(*) FROM sample_num WHERE ts < %s", (ms_to_datetime(today),)
        )
        packed = await rows(conn, "SELECT count(*), sum(cardinality(ts)) FROM sample_num_packed")
        if timescale:  # compressed rows are still rows of sample_num
            assert hot == [(600,)] and packed == [(0, None)]
        else:
            assert hot == [(0,)]
            assert packed[0][1] == 600 and packed[0][0] <= 2 * 3

        # replaying the old samples changes nothing; late new ones land and are merged later
        replay = await writer.write(batch_of(gen, old[:200]))
        assert (replay.inserted, replay.careful) == (0, True)
        late = points(40, today - 3 * DAY, today - 2 * DAY)
        assert (await writer.write(batch_of(gen, late + old[200:220]))).inserted == 40
        assert await everything() == truth
        again = await compact(database_url, now + timedelta(minutes=1))
        assert again.packed_rows == (0 if timescale else 40)
        assert await everything() == truth
        if timescale:
            assert [c[1] for c in await compressed_chunks(conn)] == [True, True, True, False]
        else:
            packed = await rows(conn, "SELECT sum(cardinality(ts)) FROM sample_num_packed")
            assert packed[0][0] == 640

        # roll-ups of packed days come from the packed samples
        lo = ms_to_datetime(today - 4 * DAY)
        await conn.execute(
            "SELECT plantwire_rollup_minutes(%s, %s, NULL)", (lo, ms_to_datetime(today))
        )
        sums = await rows(conn, "SELECT series_id, sum(n), sum(sum) FROM rollup_minute GROUP BY 1")
        expected = {
            s: (
                sum(1 for (x, t) in truth if x == s and t < today),
                sum(v for (x, t), v in truth.items() if x == s and t < today),
            )
            for s in sid.values()
        }
        assert {s: (int(n), round(total, 6)) for s, n, total in sums} == {
            s: (n, round(total, 6)) for s, (n, total) in expected.items()
        }


@pytest.mark.backends("postgres")  # packed days exist on plain PostgreSQL only
async def test_reading_before_a_time_finds_rows_and_packed_days(database_url: str) -> None:
    """plantwire_sample_before: the last sample before a time, whether it is a row, in the
    newest packed day (which may also hold later samples) or in an earlier packed day."""
    day = datetime(2026, 3, 10, tzinfo=UTC)
    h = timedelta(hours=1)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        made = await rows(
            conn,
            "INSERT INTO series (group_id, edge_node_id, metric, datatype)"
            " VALUES ('G', 'N', 'Production/PartCount', 10) RETURNING id",
        )
        sid = made[0][0]
        await conn.execute(  # day 1: samples at 01:00 and 02:00; day 2: at 05:00 only
            "INSERT INTO sample_num_packed VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)",
            (
                sid,
                day,
                [3_600_000, 7_200_000],
                [10.0, 11.0],
                sid,
                day + 24 * h,
                [18_000_000],
                [12.0],
            ),
        )
        await conn.execute("INSERT INTO sample_num VALUES (%s, %s, 13.0)", (sid, day + 72 * h))

        async def before(at: datetime) -> tuple[Any, ...] | None:
            got = await rows(conn, "SELECT * FROM plantwire_sample_before(%s, %s)", (sid, at))
            return got[0] if got else None

        assert await before(day + h) is None
        assert await before(day + h + timedelta(milliseconds=1)) == (day + h, 10.0)
        # the newest packed day before 1 day 4 h holds only a later sample: the day before
        assert await before(day + 28 * h) == (day + 2 * h, 11.0)
        assert await before(day + 48 * h) == (day + 29 * h, 12.0)
        assert await before(day + 96 * h) == (day + 72 * h, 13.0)


async def test_values_within_one_millisecond_stay_rows_when_their_day_is_packed(
    database_url: str, backend: str
) -> None:
    """Packed days hold whole milliseconds: the second and later values of a millisecond
    (plantwire.ordinal) stay rows beside the packed day, and a replay doubles none."""
    today = NOW // DAY * DAY
    at = today - 3 * DAY + 1_234
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as control,
    ):
        shared = SharedState(control, "t")
        await shared.start()
        birth = read_birth(
            Route(MessageType.DBIRTH, "G", "N", "D"),
            Payload(
                timestamp=today - 5 * DAY,
                metrics=(Metric(name="M", alias=1, datatype=DataType.Double, value=0.0),),
            ),
            NOW,
        )
        gen = await shared.store_birth(birth)
        target = gen.by_alias[1]

        def burst() -> Batch:
            batch = Batch()
            for ordinal in range(3):
                batch.add_num(target.prefix, at, float(ordinal), ordinal)
            batch.add_num(target.prefix, at + 5, 9.0)
            batch.spans.append((gen.birth_id, at, at + 5))
            return batch

        writer = BatchWriter(conn, "t", pack_after_days=1)
        assert (await writer.write(burst())).inserted == 4
        now = datetime.fromtimestamp(NOW / 1000, UTC)
        report = await compact(database_url, now)
        assert report.packed_rows == (0 if backend == "timescaledb" else 2)  # whole milliseconds
        assert report.compressed_chunks == (1 if backend == "timescaledb" else 0)
        expected = [(at * 1000, 0.0), (at * 1000 + 1, 1.0), (at * 1000 + 2, 2.0)]
        expected.append(((at + 5) * 1000, 9.0))
        sql = (
            "SELECT (extract(epoch FROM ts) * 1000000)::bigint, value FROM sample_num_all"
            " WHERE series_id = %s ORDER BY ts"
        )
        assert await rows(conn, sql, (target.series_id,)) == expected
        assert (await writer.write(burst())).inserted == 0
        await compact(database_url, now + timedelta(minutes=1))
        assert await rows(conn, sql, (target.series_id,)) == expected
