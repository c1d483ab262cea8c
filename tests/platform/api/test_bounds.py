"""Requests that cannot stall the platform (a real uvicorn server on a real PostgreSQL): limits
checked before any work, statement timeouts, a client that goes away cancels its query, a
bounded number of computations, and /healthz on a connection of its own.

Slow queries are made slow for sure by holding a lock the indicator query needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_bus.mosquitto import free_port
from plantwire_platform.indicators.formulas import Thresholds
from plantwire_platform.indicators.jobs import indicators_job
from plantwire_platform.partner.tokens import Caller, issue_token
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import POOL_WAIT_S, api_server
from plantwire_platform.settings import PlatformSettings
from plantwire_platform.workers import JobFailed, WorkerPool
from plantwire_sim.scenario import load_scenario
from tests.platform.identities import TOKEN_KEY, person, secured

TEN_YEARS = {"from": "2016-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z", "bucket": "month"}


@contextlib.asynccontextmanager
async def serving(
    settings: PlatformSettings, signed_in: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """A real server, and a client of it signed in as a platform admin (unless not)."""
    server = api_server(settings)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://{settings.api_host}:{settings.api_port}", timeout=30
        ) as client:
            if signed_in:
                client.headers.update(
                    await person(client, settings.database_url, "root", "platform_admin")
                )
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=STOP_S)
        await ended([task])
        if not task.cancelled():
            task.result()  # the server's own failure, if any


STOP_S = 30.0
"""Longest wait for a server told to stop (it gives its requests 2 s, then cancels them)."""


async def ended(tasks: list[asyncio.Task[Any]], within_s: float = 10.0) -> None:
    """Cancel those of ``tasks`` still running and wait for them, at most ``within_s``: a test
    leaves no task behind (its event loop's teardown would wait for it, maybe without end)."""
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=within_s)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # seen: no "exception was never retrieved" at teardown
    assert not pending, f"{len(pending)} task(s) still running {within_s} s after cancel"


def settings(database_url: str, **changes: Any) -> PlatformSettings:
    return secured(database_url, api_port=free_port(), **changes)


@pytest.fixture
async def enterprise(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ids = await import_registry(conn, registry_from(load_scenario("demo").registry()))
    return ids["HXP"]


@contextlib.contextmanager
def locked(database_url: str, table: str = "connectivity_session") -> Iterator[None]:
    """Hold an exclusive lock on ``table``: every indicator query waits for it."""
    with psycopg.connect(database_url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def api_queries(database_url: str) -> list[str]:
    """The API's statements running now (other than this one)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND pid <> pg_backend_pid()"
            " AND query LIKE '%connectivity_session%'"
        ).fetchall()
    return [r[0] for r in rows]


async def test_over_the_limits_is_refused_before_any_work(
    database_url: str, enterprise: int
) -> None:
    """Refused with 422 while every indicator query would wait for a lock: nothing was
    tried (the caller is identified first)."""
    s = settings(database_url, api_max_buckets=100)
    async with serving(s) as client:
        cases = {
            "months": ({**TEN_YEARS}, "120 months; at most 100 buckets per request"),
            "window": (
                {"from": "1990-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
                "the window is longer than 7305 days",
            ),
            "order": ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "before"),
            "far": (
                {"from": "9999-12-01T00:00:00+23:59", "to": "9999-12-31T23:59:59+23:59"},
                "within 1970..2200",
            ),
        }
        with locked(database_url):
            for name, (params, detail) in cases.items():
                path = f"/api/v1/enterprises/{enterprise}/indicators"
                r = await client.get(path, params=params)
                assert r.status_code == 422, (name, r.text)
                assert r.json()["error"] == "invalid_request"
                assert detail in str(r.json()["detail"]), (name, r.json())
            r = await client.get("/api/v1/chains/1/indicators", params=TEN_YEARS)
            assert r.status_code == 422


async def test_without_a_database_nobody_is_answered(unique: str) -> None:
    """A server whose database does not exist: a token's holder cannot be checked (nor the
    decision audited), so the answer is 503 in the uniform body, after a bounded wait."""
    absent = f"postgresql://127.0.0.1:1/nowhere_{unique}"
    async with serving(settings(absent), signed_in=False) as client:
        token = issue_token(Caller("root", None, "platform_admin"), TOKEN_KEY, 60)
        client.headers["Authorization"] = f"Bearer {token}"
        health = await client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        # a route that needs the database says so in the uniform body, after a bounded wait
        r = await client.get("/api/v1/enterprises")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "unavailable" and r.headers["retry-after"] == "5"


async def test_a_statement_over_its_timeout_ends_in_503(database_url: str, enterprise: int) -> None:
    s = settings(database_url, api_statement_timeout_s=1.0)
    async with serving(s) as client:
        with locked(database_url):
            started = time.monotonic()
            r = await client.get(f"/api/v1/enterprises/{enterprise}/indicators")
            took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.json() == {
            "error": "too_long",
            "detail": "a database statement took longer than allowed: ask for less",
        }
        assert took < 10  # ended by the statement timeout, not by the lock's holder
        r = await client.get(f"/api/v1/enterprises/{enterprise}/indicators")
        assert r.status_code == 200  # the connection went back to the pool in good order


LIGHT: dict[str, str] = {}  # the last hour: computed on the request's connection
HEAVY = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z", "bucket": "day"}  # worker


@pytest.mark.parametrize("params", [LIGHT, HEAVY], ids=["light", "in a worker"])
async def test_a_client_that_goes_away_cancels_its_query(
    database_url: str, enterprise: int, params: dict[str, str]
) -> None:
    s = settings(database_url, api_statement_timeout_s=600.0)
    async with serving(s) as client:
        with locked(database_url):
            with pytest.raises(httpx.ReadTimeout):
                await client.get(
                    f"/api/v1/enterprises/{enterprise}/indicators", params=params, timeout=1.0
                )
            deadline = time.monotonic() + 10
            while api_queries(database_url):  # gone long before its 600 s timeout
                assert time.monotonic() < deadline, api_queries(database_url)
                await asyncio.sleep(0.1)
        while (await client.get("/healthz")).json()["computations"]["running"]:
            assert time.monotonic() < deadline, "the computation's slot was not given back"
            await asyncio.sleep(0.1)


STATEMENT_S = 60.0
"""The statement timeout of the bounded server: every request waiting for the lock ends by
then (503 ``too_long``), so a state the test waits for that never comes ends in that body."""


async def still_running(tasks: list[asyncio.Task[httpx.Response]]) -> None:
    """While the lock is held nothing may have been answered yet: if one was, say what."""
    for task in tasks:
        if task.done():
            r = task.result()
            pytest.fail(f"answered while the lock was held: {r.status_code} {r.text}")


async def test_computations_are_bounded_and_healthz_still_answers(
    database_url: str, enterprise: int
) -> None:
    """Two computations run, one waits for a slot, the next is refused at once (503 busy);
    with both pooled connections held, a registry read waits for one at most POOL_WAIT_S and
    is answered 503 unavailable, while /healthz answers over a connection of its own.

    The waits for a state have no clock of the test's own: the requests waiting for the lock
    end at the server's statement timeout, so a state that never comes fails with the body
    the server gave (and the whole test at pytest's timeout)."""
    s = settings(
        database_url,
        api_compute_slots=2,
        api_compute_queue=1,
        api_pool_size=2,
        api_statement_timeout_s=STATEMENT_S,
    )
    path = f"/api/v1/enterprises/{enterprise}/indicators"
    wait = STATEMENT_S + 30  # the client outwaits the server's own bound
    tasks: list[asyncio.Task[httpx.Response]] = []
    async with serving(s) as client:
        try:
            with locked(database_url):
                # heavy ones: 2 run in workers, 1 waits for a slot, the next is refused
                running = [
                    asyncio.create_task(client.get(path, params=HEAVY, timeout=wait))
                    for _ in range(3)
                ]
                tasks += running
                while True:
                    work = (await client.get("/healthz")).json()["computations"]
                    if (work["running"], work["waiting"]) == (2, 1):
                        break
                    await still_running(tasks)
                    await asyncio.sleep(0.05)
                refused = await client.get(path, params=HEAVY)
                assert refused.status_code == 503
                assert refused.json()["error"] == "busy"
                assert refused.headers["retry-after"] == "5"
                # light ones hold both pooled connections (2 queries in workers, 2 on pooled
                # connections, all waiting for the lock)
                held = [asyncio.create_task(client.get(path, timeout=wait)) for _ in range(2)]
                tasks += held
                while len(api_queries(database_url)) < 4:
                    await still_running(tasks)
                    await asyncio.sleep(0.05)
                # a registry read waits for a pooled connection, at most POOL_WAIT_S, and
                # /healthz answers meanwhile
                sent = time.monotonic()
                pool_taker = asyncio.create_task(client.get("/api/v1/enterprises"))
                tasks.append(pool_taker)
                healthy = 0
                while not pool_taker.done():
                    health = await client.get("/healthz")
                    assert health.status_code == 200 and health.json()["database"] == "ok"
                    healthy += 1
                waited = time.monotonic() - sent
                r = pool_taker.result()
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "unavailable" and r.headers["retry-after"] == "5"
                assert waited >= POOL_WAIT_S  # the pool's own wait, started after the sending
                assert healthy >= 1
                await still_running(running + held)
            answers = await asyncio.gather(*running, *held)
            assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
        finally:
            await ended(tasks)


async def test_a_time_without_offset_is_read_in_the_enterprise_zone(
    database_url: str, enterprise: int
) -> None:
    s = settings(database_url)
    async with serving(s) as client:
        r = await client.get(
            f"/api/v1/enterprises/{enterprise}/indicators",
            params={"from": "2026-03-01T08:00:00", "to": "2026-03-01T20:00:00"},
        )
        assert r.status_code == 200, r.text
        window = r.json()["window"]
        # no telemetry then: rates without a denominator are there, as null
        indicators = {i["name"]: i for i in r.json()["indicators"]}
        assert indicators["mdi_share"]["value"] is None
        assert indicators["nc_rate_declared"]["value"] == 0.625
        assert all("pooled" not in i for i in indicators.values())  # a group's only
    start = datetime.fromisoformat(window["from"].replace("Z", "+00:00"))
    assert start == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # 08:00 in Asia/Shanghai
    assert datetime.fromisoformat(window["to"].replace("Z", "+00:00")) - start == timedelta(
        hours=12
    )


async def test_workers_closed_under_a_running_job_fail_its_caller(
    database_url: str, enterprise: int
) -> None:
    """Workers closed while a job runs (a server stopping under load): the job's caller gets
    JobFailed("unavailable") at once. A terminated worker never reports, and before, its
    caller waited forever, and so did its cancellation (which waits for the job's end): the
    event loop's teardown then hung."""
    pool = WorkerPool(database_url, 1, 600_000)
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    with locked(database_url):
        caller = asyncio.create_task(pool.run(indicators_job, enterprise, start, end, Thresholds()))
        try:
            while not api_queries(database_url):  # the job waits for the lock
                assert not caller.done(), caller
                await asyncio.sleep(0.05)
            await pool.close()
            done, _ = await asyncio.wait({caller}, timeout=10)
            assert caller in done, "the caller still waits for a worker that was terminated"
            with pytest.raises(JobFailed) as failed:
                caller.result()
            assert failed.value.reason == "unavailable"
        finally:
            await ended([caller])
