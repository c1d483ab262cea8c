"""Schema and partitions on a real PostgreSQL: the plain-PostgreSQL path, migrations that are
idempotent and safe on a database migrated before them, partition upkeep and retention."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from plantwire_platform import services, timescaledb
from plantwire_platform.database import migrate, migrations
from plantwire_platform.storage.partitions import Partition, maintain, partition_for, partitions
from tests.platform.commands import CLI


def rows(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode(), params or None).fetchall()


def test_storage_path_follows_the_server(database_url: str, backend: str) -> None:
    # Plain PostgreSQL (TimescaleDB files may be installed, the library is not preloaded):
    # native partitions. TimescaleDB preloaded: hypertables for numbers and booleans.
    timescale = backend == "timescaledb"
    assert rows(database_url, "SELECT plantwire_timescale_available()") == [(timescale,)]
    mode = "timescaledb" if timescale else "partitioned"
    assert rows(database_url, "SELECT value FROM storage_setting") == [(mode,)]
    extension = rows(database_url, "SELECT extname FROM pg_extension WHERE extname = 'timescaledb'")
    assert extension == ([("timescaledb",)] if timescale else [])
    partitioned = rows(
        database_url,
        "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
        " ORDER BY 1",
    )
    expected = ["sample_text"] if timescale else ["sample_bool", "sample_num", "sample_text"]
    assert [r[0] for r in partitioned] == expected
    if timescale:
        hypertables = rows(
            database_url,
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
            " ORDER BY 1",
        )
        assert hypertables == [("sample_bool", True), ("sample_num", True)]
    keys = rows(
        database_url,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indrelid"
        " WHERE c.relname IN ('sample_num', 'sample_bool', 'sample_text') AND i.indisunique",
    )
    assert sorted(str(k[0]) for k in keys) == ["sample_bool", "sample_num", "sample_text"]
    assert all("(series_id, ts)" in str(k[1]) for k in keys)  # idempotency survives
    # the key and the BRIN index on ts, nothing else (no default time index on hypertables)
    indexes = rows(
        database_url,
        "SELECT tablename, indexname FROM pg_indexes"
        " WHERE tablename IN ('sample_num', 'sample_bool') ORDER BY 1, 2",
    )
    assert indexes == [
        ("sample_bool", "sample_bool_pkey"),
        ("sample_num", "sample_num_pkey"),
        ("sample_num", "sample_num_ts_brin"),
    ]


def test_migrations_are_idempotent(database_url: str) -> None:
    assert asyncio.run(migrate(database_url)) == []
    assert asyncio.run(migrate(database_url)) == []


@pytest.fixture
def two_databases(pg_admin_url: str, unique: str) -> Iterator[tuple[str, str]]:
    names = (f"plantwire_fresh_{unique}", f"plantwire_old_{unique}")
    urls = tuple(services.ensure_database(pg_admin_url, n, fresh=True) for n in names)
    yield urls[0], urls[1]
    for name in names:
        services.drop_database(pg_admin_url, name)


EARLY = {1, 10, 11, 20}  # the migrations such a database had before 0002-0004 existed


def test_database_migrated_before_the_ingest_migrations(two_databases: tuple[str, str]) -> None:
    """The lead's migrations (0010+) ran first on an existing database; ours come after and
    must keep its rows and triggers and give the same schema as a fresh database."""
    fresh, old = two_databases
    asyncio.run(migrate(fresh))
    with psycopg.connect(old, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in migrations():
            if m.version in EARLY:
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_migration VALUES (%s, %s)", (m.version, m.name))
        conn.execute(
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype)"
            " VALUES ('G', 'N', 'D', 'State/Mode', 12), ('G', 'N', 'D', 'Speed', 10)"
        )
        conn.execute(
            "INSERT INTO sample_text (series_id, ts, value) VALUES (1, now(), 'AUTO'),"
            " (1, '2024-03-05', 'MANUAL')"
        )
        conn.execute("INSERT INTO sample_num (series_id, ts, value) VALUES (2, now(), 1.5)")
    applied = asyncio.run(migrate(old))
    assert applied == [m.version for m in migrations() if m.version not in EARLY]
    assert rows(old, "SELECT value FROM sample_text ORDER BY ts") == [("MANUAL",), ("AUTO",)]
    assert rows(old, "SELECT value FROM sample_num") == [(1.5,)]
    assert rows(old, "SELECT count(*) FROM sample_text_default") == [(0,)]  # moved out
    schema = (
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal AND c.relispartition = false ORDER BY 1, 2"
    )
    assert rows(old, schema) == rows(fresh, schema)
    columns = (
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name NOT LIKE 'sample\\_%\\_p%'"
        " AND table_name NOT LIKE 'sample\\_%\\_m%' ORDER BY 1, 2"
    )
    assert rows(old, columns) == rows(fresh, columns)


@pytest.mark.backends("postgres")  # hypertables: test_hypertables.py
def test_partitions_ahead_default_drained_and_retention(database_url: str) -> None:
    now = datetime(2031, 6, 15, 12, tzinfo=UTC)
    stamps = [
        now,  # today
        now - timedelta(days=10),  # recent history: a daily partition
        datetime(2030, 2, 3, tzinfo=UTC),  # old history: a monthly partition
        datetime(2030, 2, 20, tzinfo=UTC),  # same month
        now + timedelta(days=20),  # far future
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO series (group_id, edge_node_id, metric, datatype)"
            " VALUES ('G', 'N', 'x', 10)"
        )
        for i, ts in enumerate(stamps):
            conn.execute("INSERT INTO sample_num VALUES (1, %s, %s)", (ts, float(i)))
    assert rows(database_url, "SELECT count(*) FROM sample_num_default") == [(5,)]
    report = asyncio.run(maintain(database_url, ahead_days=2, now=now))
    assert rows(database_url, "SELECT count(*) FROM sample_num_default") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM sample_num") == [(5,)]
    names = {p.name for p in asyncio.run(_partitions(database_url))}
    expected = {
        "sample_num_p20310614",  # yesterday .. two days ahead
        "sample_num_p20310615",
        "sample_num_p20310616",
        "sample_num_p20310617",
        "sample_num_p20310605",
        "sample_num_m203002",
        "sample_num_p20310705",
    }
    assert expected <= names and set(report.created) >= expected
    where = rows(
        database_url,
        "SELECT tableoid::regclass::text, value FROM sample_num ORDER BY value",
    )
    assert [w[0] for w in where] == [
        "sample_num_p20310615",
        "sample_num_p20310605",
        "sample_num_m203002",
        "sample_num_m203002",
        "sample_num_p20310705",
    ]
    again = asyncio.run(maintain(database_url, ahead_days=2, now=now))
    assert again.created == [] and again.moved_rows == 0
    kept = asyncio.run(maintain(database_url, ahead_days=2, retention_days=30, now=now))
    assert "sample_num_m203002" in kept.dropped
    assert rows(database_url, "SELECT value FROM sample_num ORDER BY value") == [
        (0.0,),
        (1.0,),
        (4.0,),
    ]


async def _partitions(url: str) -> list[Partition]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return list(await partitions(conn, "sample_num"))


def test_a_partition_is_named_after_its_utc_day_whatever_zone_its_day_was_read_in() -> None:
    # a day of rows read from the DEFAULT partition comes back in the session's zone: UTC's
    # 2026-12-17 is 2026-12-16 19:00 in New York, and was named p20261216, the name of the
    # day before's partition
    now = datetime(2026, 12, 7, tzinfo=UTC)
    day = datetime(2026, 12, 17, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    got = partition_for("sample_num", day, now, [])
    assert (got.name, got.lo, got.hi) == (
        "sample_num_p20261217",
        datetime(2026, 12, 17, tzinfo=UTC),
        datetime(2026, 12, 18, tzinfo=UTC),
    )
    old = datetime(2026, 3, 1, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert partition_for("sample_num", old, now, []).name == "sample_num_m202603"


def test_migrate_says_which_storage_mode(pg_admin_url: str, backend: str, unique: str) -> None:
    name = f"plantwire_cli_{unique}"
    url = services.ensure_database(pg_admin_url, name, fresh=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", CLI, "platform", "migrate"],
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        services.drop_database(pg_admin_url, name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"applied {len(migrations())} migrations"
    timescale = f"timescaledb (TimescaleDB {timescaledb.VERSION}:"
    mode = timescale if backend == "timescaledb" else "partitioned (plain"
    assert lines[1].startswith(f"storage mode: {mode}")
