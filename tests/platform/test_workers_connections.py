"""A worker lends its jobs the connections earlier jobs gave back: the same server process,
renamed after each job (its cancellation finds it by that name), with the API's statement
timeout and without JIT compilation; a connection that went bad, or whose job failed, is not
lent again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from plantwire_platform import workers
from plantwire_platform.workers import Connector, _run


async def whoami(connect: Any) -> tuple[int, str, str, str]:
    async with connect() as conn:
        cur = await conn.execute(
            "SELECT pg_backend_pid(), current_setting('application_name'),"
            " current_setting('statement_timeout'), current_setting('jit')"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), str(row[1]), str(row[2]), str(row[3])


async def fails(connect: Any) -> None:
    async with connect() as conn:
        await conn.execute("SELECT 1/0")


@pytest.fixture
def kept() -> Iterator[None]:
    yield
    for conns in workers._idle.values():
        for _, conn in conns:
            _run(_close, (conn,), Connector("", "", 0))
    workers._idle.clear()


async def _close(_connect: Any, conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.close()


def test_a_kept_connection_is_lent_again_renamed(database_url: str, kept: None) -> None:
    first = _run(whoami, (), Connector(database_url, "first", 5_000))
    second = _run(whoami, (), Connector(database_url, "second", 5_000))
    assert first == (first[0], "plantwire-job-first", "5s", "off")
    assert second == (first[0], "plantwire-job-second", "5s", "off")  # the same server process


def test_a_terminated_connection_is_not_lent_again(database_url: str, kept: None) -> None:
    pid, _, _, _ = _run(whoami, (), Connector(database_url, "first", 5_000))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    again = _run(whoami, (), Connector(database_url, "again", 5_000))
    assert again[0] != pid and again[1] == "plantwire-job-again"


def test_a_failed_jobs_connection_is_closed(database_url: str, kept: None) -> None:
    pid, _, _, _ = _run(whoami, (), Connector(database_url, "first", 5_000))
    with pytest.raises(psycopg.errors.DivisionByZero):
        _run(fails, (), Connector(database_url, "fails", 5_000))
    after = _run(whoami, (), Connector(database_url, "after", 5_000))
    assert after[0] != pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        deadline = time.monotonic() + 10  # the server process ends soon after the close
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the failed job's connection is still open"
            time.sleep(0.05)


def test_connections_are_kept_per_statement_timeout(database_url: str, kept: None) -> None:
    five = _run(whoami, (), Connector(database_url, "five", 5_000))
    seven = _run(whoami, (), Connector(database_url, "seven", 7_000))
    assert seven[0] != five[0] and seven[2] == "7s"
