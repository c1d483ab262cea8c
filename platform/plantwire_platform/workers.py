"""Computations in worker processes, so that CPU-heavy work never runs on the API's event loop.

A job is a module-level coroutine function ``job(connect, *args)``; ``connect()`` lends it a
database connection (autocommit off, the API's ``statement_timeout`` and no JIT, as every
connection that answers requests (:func:`request_options`), and an
``application_name`` that names the job). A worker keeps the connections its jobs gave back
(:data:`IDLE_MAX` at most, for :data:`IDLE_S`) and lends them to its next jobs: a new
connection costs a server process and that process's cold catalog caches, which on a busy
machine was a third of a chain's indicator request.

The API awaits the job's result; when the request is cancelled (its client went away, its
deadline passed) the job's connections are terminated in the server, which ends the job at its
next statement. Workers are started with the API (:meth:`WorkerPool.start`, importing the
jobs' modules, so that the first request does not wait for new processes) or else when first
needed, and live as long as the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import multiprocessing
import multiprocessing.pool
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg.errors import QueryCanceled

from plantwire_platform.connections import connect

T = TypeVar("T")
APPLICATION = "plantwire-job-"


def request_options(statement_timeout_ms: int) -> str:
    """Server settings of the connections that answer requests: their statements are cut off
    after ``statement_timeout_ms``, and never JIT-compiled (the planner's row estimates for the
    indicator statements' unnest and lateral joins run hundreds of times too high, so their
    cost passed ``jit_above_cost`` and compiling took 0.8 s of a statement that runs in 20 ms).
    Their session is in UTC, as every platform connection's (:mod:`.connections`)."""
    return f"-c statement_timeout={statement_timeout_ms} -c jit=off"


class JobFailed(Exception):
    """A job ended by the database: ``too_long`` (statement timeout) or ``unavailable``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


IDLE_MAX = 4
"""Connections a worker keeps between jobs (a job of a group uses up to four side by side)."""

IDLE_S = 300.0
"""A kept connection not lent again within this long is closed."""

_idle: dict[tuple[str, int], list[tuple[float, psycopg.AsyncConnection[Any]]]] = {}
"""In a worker: the connections its jobs gave back, by (database URL, statement timeout)."""

_loop: asyncio.AbstractEventLoop | None = None
"""In a worker: the event loop its jobs run on (kept connections belong to it)."""


class Connector:
    """Lends the connections of one job (in the worker): a kept one when there is one, renamed
    after the job, else a new one."""

    def __init__(self, database_url: str, ticket: str, statement_timeout_ms: int) -> None:
        self.database_url = database_url
        self.ticket = ticket
        self.statement_timeout_ms = statement_timeout_ms

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        key = (self.database_url, self.statement_timeout_ms)
        conn = await self._kept(key) or await connect(
            self.database_url,
            application_name=APPLICATION + self.ticket,
            options=request_options(self.statement_timeout_ms),
        )
        try:
            yield conn
        except BaseException:
            await conn.close()
            raise
        await self._give_back(key, conn)

    async def _kept(self, key: tuple[str, int]) -> psycopg.AsyncConnection[Any] | None:
        """A kept connection, named after this job (its cancellation finds it by that name);
        one that went bad meanwhile (terminated, server restarted) is closed and skipped."""
        kept = _idle.get(key, [])
        now = time.monotonic()
        while kept:
            since, conn = kept.pop()
            if now - since > IDLE_S:
                await conn.close()
                continue
            try:  # outside a transaction: one round trip, not three (BEGIN, rename, COMMIT)
                await conn.set_autocommit(True)
                await conn.execute(
                    "SELECT set_config('application_name', %s, false)",
                    (APPLICATION + self.ticket,),
                )
                await conn.set_autocommit(False)
            except psycopg.Error:
                await conn.close()
                continue
            return conn
        return None

    @staticmethod
    async def _give_back(key: tuple[str, int], conn: psycopg.AsyncConnection[Any]) -> None:
        kept = _idle.setdefault(key, [])
        if conn.closed or conn.broken or len(kept) >= IDLE_MAX:
            await conn.close()
            return
        try:
            await conn.rollback()
        except psycopg.Error:
            await conn.close()
            return
        kept.append((time.monotonic(), conn))


Job = Callable[..., Coroutine[Any, Any, T]]


def _run(job: Job[T], args: tuple[Any, ...], connector: Connector) -> T:
    """In the worker: run one job to its end."""

    global _loop

    async def main() -> T:
        try:
            return await job(connector, *args)
        except QueryCanceled:
            raise JobFailed("too_long") from None
        except psycopg.OperationalError:
            raise JobFailed("unavailable") from None

    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(main())


def _prepare(modules: tuple[str, ...], ready: Any) -> None:
    """In a new worker: get SIGTERM when the API process dies, however it dies (Linux), import
    the modules its jobs live in, then say so on ``ready`` (a queue, or None)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    for name in modules:
        importlib.import_module(name)
    if ready is not None:
        ready.put(True)


class WorkerPool:
    """The worker processes of one API process, one per computation slot: a job never waits
    for a worker (the API's workload lets only as many jobs run as there are workers)."""

    def __init__(self, database_url: str, workers: int, statement_timeout_ms: int) -> None:
        self.database_url = database_url
        self.workers = workers
        self.statement_timeout_ms = statement_timeout_ms
        self._pool: multiprocessing.pool.Pool | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        """Results of the jobs running now: a job abandoned by close() gets its failure."""

    def start(self, *modules: str, timeout_s: float = 60.0) -> None:
        """Start the workers now and return once each has imported ``modules`` (the jobs'
        modules), or after ``timeout_s``; blocking."""
        if self._pool is not None:
            return
        context = multiprocessing.get_context("spawn")
        ready = context.SimpleQueue()
        self._pool = context.Pool(self.workers, initializer=_prepare, initargs=(modules, ready))
        deadline = time.monotonic() + timeout_s
        waiting = self.workers
        while waiting and time.monotonic() < deadline:
            if ready.empty():
                time.sleep(0.02)
            else:
                ready.get()
                waiting -= 1

    def _workers(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_prepare, initargs=((), None))
        return self._pool

    async def run(self, job: Job[T], *args: Any) -> T:
        """``job(connect, *args)`` in a worker; cancelling the caller ends the job too."""
        ticket = uuid.uuid4().hex
        connector = Connector(self.database_url, ticket, self.statement_timeout_ms)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

        def done(value: Any) -> None:
            if not future.done():
                future.set_result(value)

        def failed(exc: BaseException) -> None:
            if not future.done():
                future.set_exception(exc)

        self._workers().apply_async(
            _run,
            (job, args, connector),
            callback=lambda v: loop.call_soon_threadsafe(done, v),
            error_callback=lambda e: loop.call_soon_threadsafe(failed, e),
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.shield(self._end(ticket, future))
            raise

    async def _end(self, ticket: str, future: asyncio.Future[Any]) -> None:
        """Terminate the job's connections until the job has ended."""
        while not future.done():
            with contextlib.suppress(psycopg.Error, OSError):
                async with await connect(
                    self.database_url, autocommit=True, connect_timeout=5
                ) as conn:
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s",
                        (APPLICATION + ticket,),
                    )
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(future), 0.5)

    async def close(self) -> None:
        """Stop the workers at once: a job still running is abandoned, and its caller gets
        ``JobFailed("unavailable")`` (a terminated worker never reports, so without that the
        caller, and a cancellation waiting for the job's end, would wait forever)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()
            for future in list(self._pending):
                if not future.done():
                    future.set_exception(JobFailed("unavailable"))
            await asyncio.to_thread(pool.join)
