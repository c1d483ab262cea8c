"""Writes a :class:`~plantwire_platform.ingest.batch.Batch` into PostgreSQL in one transaction.

Samples go by binary COPY straight into the sample tables, inside a savepoint. The tables'
(series_id, ts) keys turn a redelivered or replayed sample into a unique violation: the
savepoint is rolled back and the batch goes the careful way instead, COPY into session-local
staging tables and ``INSERT ... ON CONFLICT DO NOTHING``. After a conflict the careful way is
kept for a while, since replays come in runs. Either way a sample is stored once. Late samples
leave marks for the roll-ups (see migration 0004), state samples rebuild their intervals and
alarm/event samples become events, all in the same transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors

from plantwire_platform.ingest.batch import KINDS, Batch, DeadLetter, ms_to_datetime

log = logging.getLogger(__name__)

_VALUE_TYPES = ("double precision", "boolean", "text")
RETRYABLE = (
    errors.DeadlockDetected,
    errors.SerializationFailure,
    errors.LockNotAvailable,
)
CAREFUL_FOR_S = 10.0  # after a conflict, write the careful way this long
_NOT_PACKED = (
    " WHERE s.ts <> date_trunc('milliseconds', s.ts) OR NOT EXISTS (SELECT 1"
    "  FROM sample_num_packed p WHERE p.series_id = s.series_id"
    "  AND p.bucket = date_bin('1 day', s.ts, TIMESTAMPTZ 'epoch')"
    "  AND (extract(epoch FROM s.ts - p.bucket) * 1000)::integer = ANY (p.ts))"
)


@dataclass(slots=True)
class WriteResult:
    inserted: int  # sample rows really added
    careful: bool  # written through staging (a replay or redelivery was seen)
    conflicts: int = 0  # values refused: another value holds their series and time


def clean_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL."""
    return text.replace("\0", "\ufffd")


class BatchWriter:
    """Owns one connection (autocommit; each batch is one explicit transaction)."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        worker: str = "",
        pack_after_days: int | None = None,
    ) -> None:
        self._conn = conn
        self._worker = worker
        # samples this old may belong to a packed day: only the careful way checks those
        self._packed_before_ms = (
            None if pack_after_days is None else max(pack_after_days - 1, 0) * 86_400_000
        )
        self._staging_ready = False
        self._careful_until = 0.0
        self.rows_written = 0
        self.conflicts = 0

    async def write(self, batch: Batch) -> WriteResult:
        """Store the batch (commits); retried on deadlocks and serialization failures."""
        if not batch.has_rows:
            return WriteResult(0, False)  # no transaction to wait for
        for attempt in range(5):
            try:
                result = await self._write_once(batch)
            except RETRYABLE as exc:
                if attempt == 4:
                    raise
                log.info("batch write retried after %s", type(exc).__name__)
                continue
            self.rows_written += result.inserted
            return result
        raise AssertionError("unreachable")

    async def _write_once(self, batch: Batch) -> WriteResult:
        conn = self._conn
        now = time.time_ns() // 1_000_000
        packed = self._packed_before_ms is not None and any(
            first < now - self._packed_before_ms for _, first, _ in batch.spans
        )
        async with conn.transaction():
            careful = packed or time.monotonic() < self._careful_until
            inserted = 0
            if batch.samples and not careful:
                try:
                    async with conn.transaction():  # savepoint
                        await self._copy_direct(batch)
                    inserted = batch.samples
                except errors.UniqueViolation:
                    self.conflicts += 1
                    self._careful_until = time.monotonic() + CAREFUL_FOR_S
                    careful = True
            conflicts: list[tuple[DeadLetter, int]] = []
            if batch.samples and careful:
                inserted = await self._copy_staged(batch, packed, conflicts)
            births, minutes = batch.late_marks(now)
            if births:
                await conn.execute(
                    "INSERT INTO rollup_dirty (birth_id, bucket) SELECT b,"
                    " TIMESTAMPTZ 'epoch' + m * INTERVAL '1 millisecond'"
                    " FROM unnest(%s::bigint[], %s::bigint[]) AS u(b, m)",
                    (births, minutes),
                )
            if batch.states:
                ids = list(batch.states)
                await conn.execute(
                    "SELECT plantwire_rebuild_state_intervals(%s::bigint[], %s::timestamptz[])",
                    (ids, [ms_to_datetime(batch.states[i]) for i in ids]),
                )
            if batch.events:
                await self._events(batch)
            if batch.dead_letters or conflicts:
                await self._dead_letters(batch.dead_letters + [d for d, _ in conflicts])
        return WriteResult(inserted, careful, sum(n for _, n in conflicts))

    async def _copy_direct(self, batch: Batch) -> None:
        async with self._conn.cursor() as cur:
            for kind, name in enumerate(KINDS):
                if batch.counts[kind]:
                    async with cur.copy(
                        f"COPY sample_{name} (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
                    ) as copy:
                        await copy.write(batch.copy_data(kind))

    async def _copy_staged(
        self, batch: Batch, packed: bool, conflicts: list[tuple[DeadLetter, int]]
    ) -> int:
        conn = self._conn
        if not self._staging_ready:
            for name, sqltype in zip(KINDS, _VALUE_TYPES, strict=True):
                await conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS staging_{name} (series_id bigint,"
                    f" ts timestamptz, value {sqltype}) ON COMMIT DELETE ROWS"
                )
            self._staging_ready = True
        inserted = 0
        async with conn.cursor() as cur:
            for kind, name in enumerate(KINDS):
                if not batch.counts[kind]:
                    continue
                async with cur.copy(
                    f"COPY staging_{name} (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    await copy.write(batch.copy_data(kind))
                await cur.execute(
                    f"INSERT INTO sample_{name} (series_id, ts, value)"
                    f" SELECT series_id, ts, value FROM staging_{name} s"
                    f"{_NOT_PACKED if packed and name == 'num' else ''}"
                    " ON CONFLICT (series_id, ts) DO NOTHING"
                )
                added = max(cur.rowcount, 0)
                inserted += added
                if added < batch.counts[kind]:  # repeats, or values the keys refused?
                    await self._conflicts(cur, name, conflicts)
                await cur.execute(f"TRUNCATE staging_{name}")
        return inserted

    async def _conflicts(self, cur: Any, name: str, out: list[tuple[DeadLetter, int]]) -> None:
        """Staged values not stored because a *different* value holds their series and time
        (a repeat of the same value is a replay, absorbed silently): one dead letter per
        table, naming how many and the first."""
        await cur.execute(
            f"SELECT count(*) OVER (), s.series_id, s.ts, s.value::text, t.value::text,"
            f" r.group_id, r.edge_node_id, r.device_id, r.metric"
            f" FROM staging_{name} s JOIN sample_{name} t USING (series_id, ts)"
            f" JOIN series r ON r.id = s.series_id"
            f" WHERE t.value IS DISTINCT FROM s.value LIMIT 1"
        )
        row = await cur.fetchone()
        if row is None:
            return
        n, sid, ts, refused, kept, group, node, device, metric = row
        topic = f"spBv1.0/{group}/{'DDATA' if device else 'NDATA'}/{node}"
        topic += f"/{device}" if device else ""
        detail = (
            f"{n} values refused: another value is stored at their series and time; first: "
            f"{metric} (series {sid}) at {ts.isoformat()}: {refused} (stored: {kept})"
        )
        letter = DeadLetter(topic, "conflicting_value", detail, b"")
        out.append((letter, int(n)))

    async def _events(self, batch: Batch) -> None:
        sids, stamps, values = zip(*batch.events, strict=True)
        await self._conn.execute(
            "INSERT INTO event (ts, group_id, edge_node_id, device_id, kind, name, series_id,"
            " value) SELECT TIMESTAMPTZ 'epoch' + e.ts * INTERVAL '1 microsecond', s.group_id,"
            " s.edge_node_id, s.device_id, CASE WHEN lower(split_part(s.metric, '/', 1))"
            " IN ('alarm', 'alarms') THEN 'alarm' ELSE 'event' END, s.metric, s.id, e.v"
            " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS e(sid, ts, v)"
            " JOIN series s ON s.id = e.sid ON CONFLICT DO NOTHING",
            (list(sids), list(stamps), list(values)),
        )

    async def _dead_letters(self, letters: list[DeadLetter]) -> None:
        sql = "COPY dead_letter (topic, reason, detail, payload, worker) FROM STDIN"
        async with self._conn.cursor() as cur, cur.copy(sql) as copy:
            for d in letters:
                topic, detail = clean_text(d.topic), clean_text(d.detail)
                await copy.write_row((topic, d.reason, detail, d.payload, self._worker))


async def expire_dead_letters(conn: psycopg.AsyncConnection[Any], days: int) -> int:
    """Drop dead letters older than ``days``; returns how many."""
    cur = await conn.execute(
        "DELETE FROM dead_letter WHERE received_at < now() - make_interval(days => %s)", (days,)
    )
    if cur.rowcount:
        log.info("%d dead letters older than %d days dropped", cur.rowcount, days)
    return cur.rowcount
