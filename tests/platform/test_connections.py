"""Every platform connection's session is in UTC, whatever the database's ``TimeZone`` and the
process's ``PGTZ`` (which libpq sends after the startup options, so that it wins over them)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from plantwire_platform import connections

FAR = "Asia/Kolkata"


async def far_zone(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set the database's zone and this process's ``PGTZ`` (its children's too) to FAR."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        name = sql.Identifier(conn.info.dbname)
        await conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = {}").format(name, FAR))
    monkeypatch.setenv("PGTZ", FAR)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        assert str(conn.info.timezone) == FAR  # what any other client's session gets


@pytest.fixture
async def far_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``database_url``, its database's zone and this process's ``PGTZ`` Asia/Kolkata."""
    await far_zone(database_url, monkeypatch)
    return database_url


QUESTION = (
    "SELECT current_setting('TimeZone'), TIMESTAMPTZ '2026-10-05 10:59:00+00',"
    " date_trunc('hour', TIMESTAMPTZ '2026-10-05 10:59:00+00')::text"
)
ANSWER = ("UTC", datetime(2026, 10, 5, 10, 59, tzinfo=UTC), "2026-10-05 10:00:00+00")


@pytest.mark.parametrize("autocommit", [False, True])
async def test_a_connection_is_in_utc(far_database: str, autocommit: bool) -> None:
    async with await connections.connect(far_database, autocommit=autocommit) as conn:
        # the zone set, no transaction is left open: the caller's first one is its own
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        cur = await conn.execute(QUESTION)
        row = await cur.fetchone()
        assert row == ANSWER
        assert row[1].isoformat() == "2026-10-05T10:59:00+00:00"  # not 16:29:00+05:30


async def test_a_pools_connections_are_in_utc(far_database: str) -> None:
    async with connections.pool(far_database, options="-c jit=off", min_size=2) as pool:
        for _ in range(3):
            async with pool.connection() as conn:
                cur = await conn.execute(QUESTION + ", current_setting('jit')")
                assert await cur.fetchone() == (*ANSWER, "off")


async def test_the_urls_own_options_are_kept(far_database: str) -> None:
    url = f"{far_database}?options={quote('-c search_path=pg_catalog,public')}"
    async with await connections.connect(url, options="-c jit=off") as conn:
        cur = await conn.execute(
            "SELECT current_setting('search_path'), current_setting('jit'),"
            " current_setting('TimeZone'), now() AT TIME ZONE 'UTC' = now()::timestamp"
        )
        assert await cur.fetchone() == ("pg_catalog,public", "off", "UTC", True)
