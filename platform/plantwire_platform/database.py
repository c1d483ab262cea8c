"""The database schema: versioned, idempotent migrations (connections: :mod:`.connections`)."""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from plantwire_platform.connections import connect

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x706C616E74  # advisory lock: one migrator at a time


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The schema migrations shipped with the platform, in version order."""
    found = []
    for entry in MIGRATIONS_DIR.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for a, b in itertools.pairwise(found):
        if a.version == b.version:  # two branches took the same number
            raise RuntimeError(f"migrations {a.version:04d}_{a.name} and _{b.name} share a number")
    return found


async def create_if_missing(database_url: str) -> bool:
    """Create the database ``database_url`` names when it does not exist and its user may
    create databases (on the server's ``postgres`` database); True when it was created."""
    from psycopg import sql

    from plantwire_platform.services import with_database

    try:
        conn = await connect(database_url, autocommit=True)
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    else:
        await conn.close()
        return False
    name = psycopg.conninfo.conninfo_to_dict(database_url).get("dbname")
    if not name:
        return False
    async with await connect(with_database(database_url, "postgres"), autocommit=True) as admin:
        try:
            await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(name))))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise psycopg.OperationalError(
                f"database {name!r} does not exist and this user may not create it: "
                f"create it (createdb {name}) or set DATABASE_URL"
            ) from exc
    return True


async def migrate(database_url: str) -> list[int]:
    """Apply the migrations the database lacks, then create the sample partitions of the
    coming days; returns the versions applied."""
    from plantwire_platform.storage.partitions import maintain

    applied: list[int] = []
    async with await connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migration")
            done = {row[0] for row in await cur.fetchall()}
            for m in migrations():
                if m.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migration (version, name) VALUES (%s, %s)",
                        (m.version, m.name),
                    )
                log.info("applied migration %04d_%s", m.version, m.name)
                applied.append(m.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    await maintain(database_url)
    return applied


class TimescaleMissing(RuntimeError):
    """Converting to TimescaleDB was asked for on a server without it."""


async def convert_to_timescaledb(database_url: str, compress_after_days: int | None) -> int:
    """Turn a migrated plain-PostgreSQL database's sample tables into hypertables (migration
    0060); returns the rows moved (0 when it is on TimescaleDB already)."""
    async with await connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT plantwire_timescale_available()")
        row = await cur.fetchone()
        if not row or not row[0]:
            raise TimescaleMissing(
                "TimescaleDB is not available on this server: install it, set "
                "shared_preload_libraries = 'timescaledb', restart PostgreSQL, then run this again"
            )
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT plantwire_convert_to_timescaledb(make_interval(days => %s))",
                    (compress_after_days,),
                )
                row = await cur.fetchone()
                # as migration 0061 does for hypertables made by the first migration
                await conn.execute("DROP INDEX IF EXISTS sample_num_ts_idx, sample_bool_ts_idx")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    moved = int(row[0]) if row else 0
    log.info("converted the sample tables to TimescaleDB hypertables (%d rows moved)", moved)
    return moved


async def storage_summary(database_url: str) -> str:
    """One line on how samples are stored: 'timescaledb' (hypertables, with the extension's
    version) or 'partitioned' (plain PostgreSQL)."""
    async with await connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT (SELECT value FROM storage_setting WHERE name = 'sample_storage'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
        )
        row = await cur.fetchone()
    mode, version = (row[0], row[1]) if row else (None, None)
    if mode == "timescaledb":
        return (
            f"storage mode: timescaledb (TimescaleDB {version}: sample_num and sample_bool are "
            "hypertables of one-day chunks, compressed by policy)"
        )
    return "storage mode: partitioned (plain PostgreSQL: daily sample partitions, old days packed)"
