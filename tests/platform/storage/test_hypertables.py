"""The TimescaleDB path on a real TimescaleDB: compression and retention policies follow the
settings, run with the maintenance pass, and retention drops whole old chunks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plantwire_platform import services
from plantwire_platform.database import migrate
from plantwire_platform.storage.partitions import maintain
from plantwire_platform.timescaledb import PG_BINDIR
from tests.platform.commands import CLI

pytestmark = pytest.mark.backends("timescaledb")


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode()).fetchall()


POLICIES = (
    "SELECT hypertable_name, proc_name, config ->> 'compress_after', config ->> 'drop_after'"
    " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1, 2"
)


def test_policies_follow_the_settings_and_retention_drops_old_chunks(database_url: str) -> None:
    # the migration's default: compression after 2 days, no retention
    assert rows(database_url, POLICIES) == [
        ("sample_bool", "policy_compression", "2 days", None),
        ("sample_num", "policy_compression", "2 days", None),
    ]
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO series (group_id, edge_node_id, metric, datatype)"
            " VALUES ('G', 'N', 'x', 10), ('G', 'N', 'b', 11)"
        )
        for days in (40, 20, 5, 0):
            conn.execute("INSERT INTO sample_num VALUES (1, %s, %s)", (now - timedelta(days), days))
            conn.execute("INSERT INTO sample_bool VALUES (2, %s, true)", (now - timedelta(days),))

    # untouched without policies=True (the migration's own pass)
    report = asyncio.run(maintain(database_url, retention_days=30, compress_after_days=3))
    assert report.policies == [] and len(rows(database_url, POLICIES)) == 2
    assert rows(database_url, "SELECT count(*) FROM sample_num") == [(4,)]

    report = asyncio.run(
        maintain(database_url, retention_days=30, compress_after_days=3, policies=True)
    )
    assert sorted(report.policies) == [
        "sample_bool: compression after 3 days",
        "sample_bool: retention after 30 days",
        "sample_num: compression after 3 days",
        "sample_num: retention after 30 days",
    ]
    assert rows(database_url, POLICIES) == [
        ("sample_bool", "policy_compression", "3 days", None),
        ("sample_bool", "policy_retention", None, "30 days"),
        ("sample_num", "policy_compression", "3 days", None),
        ("sample_num", "policy_retention", None, "30 days"),
    ]
    # the 40-day-old chunks are gone, the 20- and 5-day-old ones compressed, today's not
    assert rows(database_url, "SELECT value FROM sample_num ORDER BY ts") == [
        (20.0,),
        (5.0,),
        (0.0,),
    ]
    chunks = rows(
        database_url,
        "SELECT hypertable_name, is_compressed FROM timescaledb_information.chunks"
        " ORDER BY 1, range_start",
    )
    expected = [(table, done) for table in ("sample_bool", "sample_num") for done in (1, 1, 0)]
    assert chunks == [(table, bool(done)) for table, done in expected]
    assert report.compressed_chunks == 4

    again = asyncio.run(
        maintain(database_url, retention_days=30, compress_after_days=3, policies=True)
    )
    assert again.policies == []  # nothing to change
    off = asyncio.run(maintain(database_url, compress_after_days=None, policies=True))
    assert len(off.policies) == 4 and rows(database_url, POLICIES) == []


@pytest.fixture
def plain_and_timescale(
    plain_admin_url: str, timescale_admin_url: str, unique: str
) -> Iterator[tuple[str, str, str]]:
    """A database on plain PostgreSQL, an empty one and a freshly migrated one on TimescaleDB."""
    made = [
        (plain_admin_url, f"plantwire_plain_{unique}"),
        (timescale_admin_url, f"plantwire_moved_{unique}"),
        (timescale_admin_url, f"plantwire_fresh_{unique}"),
    ]
    urls = [services.ensure_database(admin, name, fresh=True) for admin, name in made]
    yield urls[0], urls[1], urls[2]
    for admin, name in made:
        services.drop_database(admin, name)


def test_plain_database_converted_to_timescaledb(plain_and_timescale: tuple[str, str, str]) -> None:
    """A database that ran on plain PostgreSQL (partitions, packed days), moved to a server with
    TimescaleDB: `migrate --timescaledb` keeps every sample and gives a fresh one's schema."""
    plain, moved, fresh = plain_and_timescale
    asyncio.run(migrate(plain))
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO series (group_id, edge_node_id, metric, datatype)"
            " VALUES ('G', 'N', 'x', 10), ('G', 'N', 'b', 11), ('G', 'N', 'State/Mode', 12)"
        )
        for i in range(300):  # every 20 minutes over 4 days and 4 hours
            at = now - timedelta(minutes=20 * i)
            conn.execute("INSERT INTO sample_num VALUES (1, %s, %s)", (at, i / 4))
            conn.execute("INSERT INTO sample_bool VALUES (2, %s, %s)", (at, i % 3 == 0))
            conn.execute("INSERT INTO sample_text VALUES (3, %s, %s)", (at, f"M{i % 2}"))
    report = asyncio.run(maintain(plain, pack_after_days=2, now=now))
    assert report.packed_rows > 0
    truth = {q: rows(plain, q) for q in CONTENT}

    dump = subprocess.run(
        [str(PG_BINDIR / "pg_dump"), "--no-owner", plain],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(
        [str(PG_BINDIR / "psql"), "-q", "-v", "ON_ERROR_STOP=1", moved],
        input=dump,
        capture_output=True,
        check=True,
    )
    cli = subprocess.run(
        [sys.executable, "-c", CLI, "platform", "migrate", "--timescaledb"],
        env={**os.environ, "DATABASE_URL": moved, "PLANTWIRE_COMPRESS_AFTER_DAYS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines() == [
        "schema is up to date",
        "sample tables on TimescaleDB hypertables (600 samples moved)",
        cli.stdout.splitlines()[-1],
    ]
    assert cli.stdout.splitlines()[-1].startswith("storage mode: timescaledb (TimescaleDB 2.")
    assert {q: rows(moved, q) for q in CONTENT} == truth
    assert rows(moved, "SELECT count(*) FROM sample_num_packed") == [(0,)]

    asyncio.run(migrate(fresh))
    for query in SCHEMA:
        assert rows(moved, query) == rows(fresh, query), query
    assert rows(moved, POLICIES) == [
        ("sample_bool", "policy_compression", "1 day", None),
        ("sample_num", "policy_compression", "1 day", None),
    ]
    # and it runs as TimescaleDB: old chunks compress, nothing changes
    report = asyncio.run(maintain(moved, compress_after_days=1, policies=True))
    assert report.compressed_chunks >= 6
    assert {q: rows(moved, q) for q in CONTENT} == truth
    again = subprocess.run(
        [sys.executable, "-c", CLI, "platform", "migrate", "--timescaledb"],
        env={**os.environ, "DATABASE_URL": moved},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0 and "(0 samples moved)" in again.stdout


CONTENT = (
    "SELECT series_id, ts, value FROM sample_num_all ORDER BY 1, 2",
    "SELECT series_id, ts, value FROM sample_bool ORDER BY 1, 2",
    "SELECT series_id, ts, value FROM sample_text ORDER BY 1, 2",
    "SELECT series_id, start_at, value FROM state_interval ORDER BY 1, 2",
)
SCHEMA = (
    "SELECT table_name, column_name, data_type FROM information_schema.columns"
    " WHERE table_schema = 'public' AND table_name NOT LIKE 'sample\\_text\\_%' ORDER BY 1, 2",
    "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace"
    " AND c.relname NOT LIKE 'sample\\_text\\_%' ORDER BY 1, 2",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    " AND tablename NOT LIKE 'sample\\_text\\_%' ORDER BY 1, 2",
    "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "SELECT hypertable_name, num_dimensions, compression_enabled"
    " FROM timescaledb_information.hypertables ORDER BY 1",
    "SELECT * FROM timescaledb_information.dimensions ORDER BY 1, 2",
    "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index,"
    " orderby_asc FROM timescaledb_information.compression_settings ORDER BY 1, 2",
)
