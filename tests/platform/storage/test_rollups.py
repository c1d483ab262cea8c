"""Minute and hour roll-ups against an independent aggregation of the samples sent, including
replayed and late samples."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

import psycopg

from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import MessageType
from plantwire_platform.ingest.batch import Batch, Problems, ms_to_datetime
from plantwire_platform.ingest.host import Route, TimeWindow, decode_data, parse_data, read_birth
from plantwire_platform.ingest.shared_state import SharedState
from plantwire_platform.ingest.writer import BatchWriter

MINUTE = 60_000


def truth(
    samples: dict[tuple[int, int], float | None], size: int
) -> dict[tuple[int, int], tuple[Any, ...]]:
    """(alias, bucket ms) -> (n, sum, min, max, first_ts, first, last_ts, last), by hand."""
    groups: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    for (alias, ts), value in samples.items():
        if value is not None:
            groups[(alias, ts // size * size)].append((ts, value))
    out = {}
    for key, points in groups.items():
        points.sort()
        values = [v for _, v in points]
        out[key] = (
            len(values),
            sum(values),
            min(values),
            max(values),
            points[0][0],
            values[0],
            points[-1][0],
            values[-1],
        )
    return out


async def stored(
    conn: psycopg.AsyncConnection[Any], table: str, ids: dict[int, int]
) -> dict[tuple[int, int], tuple[Any, ...]]:
    alias_of = {sid: alias for alias, sid in ids.items()}
    cur = await conn.execute(
        "SELECT series_id, bucket, n, sum, min, max, first_ts, first, last_ts, last"
        f" FROM {table}".encode()
    )
    out = {}
    for sid, bucket, n, total, lo, hi, fts, first, lts, last in await cur.fetchall():
        ms = int(bucket.timestamp() * 1000)
        out[(alias_of[sid], ms)] = (
            n,
            total,
            lo,
            hi,
            int(fts.timestamp() * 1000),
            first,
            int(lts.timestamp() * 1000),
            last,
        )
    return out


def close(
    a: dict[tuple[int, int], tuple[Any, ...]], b: dict[tuple[int, int], tuple[Any, ...]]
) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        x == y or (isinstance(x, float) and abs(x - y) < 1e-6)
        for k in a
        for x, y in zip(a[k], b[k], strict=True)
    )


async def test_rollups_match_the_samples_with_replays_and_late_data(database_url: str) -> None:
    now = time.time_ns() // 1_000_000
    start = (now - 20 * MINUTE) // (60 * MINUTE) * (60 * MINUTE) - 60 * MINUTE  # ~1.5 h back
    rng = random.Random(11)
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as data,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as control,
    ):
        await data.execute("UPDATE rollup_state SET closed_until = %s", (ms_to_datetime(start),))
        shared = SharedState(control, "t")
        await shared.start()
        metrics = tuple(
            Metric(name=f"M{a}", alias=a, datatype=DataType.Double, value=0.0) for a in (1, 2, 3)
        )
        gen = await shared.store_birth(
            read_birth(
                Route(MessageType.DBIRTH, "G", "N", "D"),
                Payload(timestamp=start - 1, metrics=metrics),
                now,
            )
        )
        ids = {alias: gen.by_alias[alias].series_id for alias in (1, 2, 3)}
        writer = BatchWriter(data)
        sent: dict[tuple[int, int], float | None] = {}

        async def send(points: list[tuple[int, int, float | None]]) -> None:
            ms = [
                Metric(alias=a, datatype=DataType.Double, timestamp=ts, value=v, is_null=v is None)
                for a, ts, v in points
            ]
            payload = encode_payload(Payload(timestamp=now, metrics=tuple(ms)), omit_datatypes=True)
            pb, _, pts = parse_data(payload)
            batch = Batch()
            assert decode_data(pb, gen, TimeWindow.around(now), pts, batch, Problems(), True)
            await writer.write(batch)
            for a, ts, v in points:
                sent.setdefault((a, ts), v)

        def points(n: int, lo: int, hi: int) -> list[tuple[int, int, float | None]]:
            return [
                (
                    rng.choice((1, 2, 3)),
                    rng.randrange(lo, hi),
                    None if rng.random() < 0.05 else round(rng.uniform(-50, 50), 3),
                )
                for _ in range(n)
            ]

        first = points(400, start, now - 2 * MINUTE)
        for i in range(0, 400, 50):
            await send(first[i : i + 50])
        await send(first[100:180])  # a replay: nothing counts twice
        await data.execute("SELECT plantwire_rollup('0 seconds', 1000)")
        assert close(await stored(data, "rollup_minute", ids), truth(sent, MINUTE))
        assert close(await stored(data, "rollup_hour", ids), truth(sent, 60 * MINUTE))
        # late samples for minutes already rolled up, some of them replays again
        late = points(120, start, now - 3 * MINUTE) + first[:30]
        await send(late)
        marks = await data.execute("SELECT count(*) FROM rollup_dirty")
        assert (await marks.fetchone() or (0,))[0] > 0
        await data.execute("SELECT plantwire_rollup('0 seconds', 1000)")
        assert close(await stored(data, "rollup_minute", ids), truth(sent, MINUTE))
        assert close(await stored(data, "rollup_hour", ids), truth(sent, 60 * MINUTE))
        # minutes still open are in the live view, computed from the samples
        opened = ms_to_datetime((now - 30 * MINUTE) // MINUTE * MINUTE)  # a minute boundary
        await data.execute("UPDATE rollup_state SET closed_until = %s", (opened,))
        await data.execute("DELETE FROM rollup_minute WHERE bucket >= %s", (opened,))
        assert close(await stored(data, "rollup_minute_live", ids), truth(sent, MINUTE))
