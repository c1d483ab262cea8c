"""Upkeep of the time-partitioned sample tables: partitions ahead, the DEFAULT partition
drained, old days packed, retention.

Sample tables are range-partitioned on ``ts`` (migration 0003): one partition per UTC day, one
per month for history older than :data:`DAILY_HISTORY`, and a DEFAULT partition that takes rows
no partition covers yet (late, historical or far-future data), so an insert never fails for
want of a partition. :func:`maintain` creates the partitions of the coming days, moves rows out
of the DEFAULT partition into partitions of their own and drops partitions older than the
retention. Numeric partitions older than ``pack_after_days`` are packed into
``sample_num_packed`` (one row per series and day, see migration 0003). With TimescaleDB the
hypertables need none of this: their compression and retention policies are set and run instead
(:mod:`plantwire_platform.storage.hypertables`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from plantwire_platform.connections import connect
from plantwire_platform.storage.hypertables import HYPERTABLES, apply_policies, run_policies

log = logging.getLogger(__name__)

SAMPLE_TABLES = ("sample_num", "sample_bool", "sample_text")
DAILY_HISTORY = timedelta(days=31)
DAY = timedelta(days=1)
_LOCK_KEY = 0x706C616E7402  # one maintainer at a time across workers


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lo: datetime
    hi: datetime


@dataclass(slots=True)
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    moved_rows: int = 0
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    packed_rows: int = 0
    compressed_chunks: int = 0  # TimescaleDB: chunks compressed after this pass
    policies: list[str] = field(default_factory=list)  # TimescaleDB: policies changed
    skipped: bool = False  # another worker held the lock


def day_start(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)


def month_start(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, 1, tzinfo=UTC)


def next_month(ts: datetime) -> datetime:
    return datetime(ts.year + ts.month // 12, ts.month % 12 + 1, 1, tzinfo=UTC)


def partition_for(table: str, day: datetime, now: datetime, existing: list[Partition]) -> Partition:
    """The partition a row of ``day`` goes to: daily when recent, monthly for old history
    unless that month already has daily partitions; named after its UTC day or month, in
    whatever zone ``day`` was read."""
    day, month = day_start(day), month_start(day)
    if day >= day_start(now) - DAILY_HISTORY or any(
        p.lo < next_month(month) and p.hi > month for p in existing
    ):
        return Partition(f"{table}_p{day:%Y%m%d}", day, day + DAY)
    return Partition(f"{table}_m{month:%Y%m}", month, next_month(month))


async def storage_mode(conn: psycopg.AsyncConnection[Any]) -> str:
    """'partitioned' (native partitions) or 'timescaledb' (hypertables)."""
    cur = await conn.execute("SELECT value FROM storage_setting WHERE name = 'sample_storage'")
    row = await cur.fetchone()
    return str(row[0]) if row else "partitioned"


async def partitions(conn: psycopg.AsyncConnection[Any], table: str) -> list[Partition]:
    """The range partitions of ``table`` (not the DEFAULT one), oldest first."""
    cur = await conn.execute(
        "SELECT c.relname, m[1]::timestamptz, m[2]::timestamptz FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid,"
        " regexp_match(pg_get_expr(c.relpartbound, c.oid),"
        "  'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS m"
        " WHERE i.inhparent = %s::regclass AND m IS NOT NULL ORDER BY 2",
        (table,),
    )
    return [Partition(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def _create(conn: psycopg.AsyncConnection[Any], table: str, part: Partition) -> int:
    """Create ``part`` with the DEFAULT partition's rows of its range; returns rows moved."""
    ident, default = sql.Identifier(part.name), sql.Identifier(f"{table}_default")
    async with conn.transaction():
        await conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                ident, sql.Identifier(table)
            )
        )
        await conn.execute(
            sql.SQL("ALTER TABLE {} ADD CHECK (ts >= {} AND ts < {})").format(
                ident, sql.Literal(part.lo), sql.Literal(part.hi)
            )
        )
        cur = await conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {} WHERE ts >= %s AND ts < %s"
                " RETURNING series_id, ts, value) INSERT INTO {} SELECT * FROM moved"
            ).format(default, ident),
            (part.lo, part.hi),
        )
        moved = max(cur.rowcount, 0)
        await conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(table), ident, sql.Literal(part.lo), sql.Literal(part.hi)
            )
        )
    log.info("created partition %s (%d rows moved in)", part.name, moved)
    return moved


async def ensure_partitions(
    conn: psycopg.AsyncConnection[Any], table: str, now: datetime, ahead_days: int
) -> MaintenanceReport:
    """Daily partitions from yesterday to ``ahead_days`` ahead, and partitions for every row
    waiting in the DEFAULT partition."""
    report = MaintenanceReport()
    existing = await partitions(conn, table)
    wanted: dict[str, Partition] = {}
    today = day_start(now)
    for offset in range(-1, ahead_days + 1):
        day = today + offset * DAY
        wanted.setdefault(
            f"{table}_p{day:%Y%m%d}", Partition(f"{table}_p{day:%Y%m%d}", day, day + DAY)
        )
    cur = await conn.execute(
        sql.SQL("SELECT DISTINCT date_bin('1 day', ts, TIMESTAMPTZ 'epoch') FROM {}").format(
            sql.Identifier(f"{table}_default")
        )
    )
    for (day,) in await cur.fetchall():
        part = partition_for(table, day, now, existing)
        wanted.setdefault(part.name, part)
    for part in sorted(wanted.values(), key=lambda p: p.lo):
        if any(p.lo < part.hi and p.hi > part.lo for p in existing):
            continue  # covered (or overlapped) already
        report.moved_rows += await _create(conn, table, part)
        report.created.append(part.name)
        existing.append(part)
    return report


async def apply_retention(
    conn: psycopg.AsyncConnection[Any], table: str, cutoff: datetime
) -> MaintenanceReport:
    """Drop partitions wholly older than ``cutoff`` (hypertables: the retention policy)."""
    report = MaintenanceReport()
    for part in await partitions(conn, table):
        if part.hi <= cutoff:
            await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part.name)))
            report.dropped.append(part.name)
    cur = await conn.execute(
        sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(f"{table}_default")),
        (cutoff,),
    )
    report.deleted_rows += max(cur.rowcount, 0)
    if table == "sample_num":
        cur = await conn.execute("DELETE FROM sample_num_packed WHERE bucket < %s", (cutoff,))
        report.deleted_rows += max(cur.rowcount, 0)
    return report


async def pack(conn: psycopg.AsyncConnection[Any], older_than: datetime) -> int:
    """Pack every sample_num partition that ends by ``older_than``; returns samples moved."""
    moved = 0
    for part in await partitions(conn, "sample_num"):
        if part.hi <= older_than:
            async with conn.transaction():
                cur = await conn.execute("SELECT plantwire_pack(%s::regclass)", (part.name,))
                row = await cur.fetchone()
            if row and row[0]:
                log.info("packed %d samples of %s", row[0], part.name)
                moved += int(row[0])
    return moved


async def maintain(
    database_url: str,
    *,
    ahead_days: int = 3,
    retention_days: int | None = None,
    pack_after_days: int | None = None,
    compress_after_days: int | None = None,
    policies: bool = False,
    now: datetime | None = None,
) -> MaintenanceReport:
    """Run all upkeep once, unless another process is doing it right now. With TimescaleDB
    and ``policies``, the hypertables' compression (after ``compress_after_days``) and
    retention policies are set from the arguments and run in this pass (``now`` has no say
    there: TimescaleDB's jobs use the clock); without, they are left as they are."""
    now = now or datetime.now(UTC)
    total = MaintenanceReport()
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("SET lock_timeout = '5s'")
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,))
        row = await cur.fetchone()
        if not row or not row[0]:
            total.skipped = True
            return total
        try:
            mode = await storage_mode(conn)
            if mode == "timescaledb" and policies:
                total.policies = await apply_policies(
                    conn, compress_after_days=compress_after_days, retention_days=retention_days
                )
                ran = await run_policies(conn)
                total.compressed_chunks = ran.compressed_chunks
            for table in SAMPLE_TABLES:
                hypertable = mode == "timescaledb" and table in HYPERTABLES
                if retention_days is not None and not hypertable:  # first: no partitions then
                    dropped = await apply_retention(
                        conn, table, day_start(now) - retention_days * DAY
                    )
                    total.dropped += dropped.dropped
                    total.deleted_rows += dropped.deleted_rows
                if not hypertable:
                    created = await ensure_partitions(conn, table, now, ahead_days)
                    total.created += created.created
                    total.moved_rows += created.moved_rows
            if pack_after_days is not None and mode != "timescaledb":
                total.packed_rows = await pack(conn, day_start(now) - pack_after_days * DAY)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return total
