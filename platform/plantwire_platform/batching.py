"""Work of concurrent requests done together on one database connection.

A :class:`Batcher` takes items from any number of callers; each caller waits for its own
result. Items that arrive while one batch is on the database go in the next one, so concurrent
requests share round trips and commits instead of queueing for them one by one. The partner
API's access decisions (:class:`~plantwire_platform.partner.access.Decider`) and audit appends
(:class:`~plantwire_platform.partner.audit.AuditWriter`) are batchers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Unavailable(Exception):
    """The batch holding an item failed, or the batcher is not running."""


class Batcher(Generic[ItemT, ResultT]):
    """Runs :meth:`process` over the items queued at each moment, on a connection of the pool
    given to :meth:`run` (autocommit mode).

    ``unavailable`` is the exception callers get when their item's batch fails (or nothing
    runs). With ``isolate`` a failed batch of several items is retried item by item, so that
    one item's bad input does not fail the others; without it, every item of the batch fails.
    """

    name = "batch"
    isolate = False
    unavailable: type[Unavailable] = Unavailable
    max_batch = 500
    """Most items in one batch."""
    wait_s = 10.0
    """Longest a caller waits for its item (the database away, no connection to be had): then
    :attr:`unavailable`, and the item leaves the queue if it is still there."""

    def __init__(self, max_batch: int | None = None) -> None:
        if max_batch is not None:
            self.max_batch = max_batch
        self._queue: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._wake = asyncio.Event()
        self._running = False
        self.batches = 0
        """Batches done (each one statement or transaction)."""
        self.items = 0
        """Items those batches held."""

    async def process(self, conn: AsyncConnection[Any], items: list[ItemT]) -> list[ResultT]:
        """The results of ``items``, in their order."""
        raise NotImplementedError

    async def submit(self, item: ItemT) -> ResultT:
        """``item``'s result once its batch is done (raises :attr:`unavailable` if not)."""
        if not self._running:
            raise self.unavailable(f"the {self.name} is not running")
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        queued = (item, future)
        self._queue.append(queued)
        self._wake.set()
        try:
            return await asyncio.wait_for(future, self.wait_s)
        except TimeoutError:
            if queued in self._queue:
                self._queue.remove(queued)
            raise self.unavailable(f"the {self.name} waited {self.wait_s:g} s in vain") from None

    async def run(self, pool: AsyncConnectionPool) -> None:
        """Do batches on a connection of ``pool`` until cancelled; items still queued then
        fail."""
        self._running = True
        try:
            while True:
                try:
                    async with pool.connection() as conn:
                        await self._serve(conn)
                except psycopg.OperationalError as exc:  # connection lost: take another
                    log.warning("%s reconnecting: %s", self.name, exc)
                    await asyncio.sleep(0.5)
        finally:
            self._running = False
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(self.unavailable(f"the {self.name} stopped"))
            self._queue.clear()

    async def _serve(self, conn: AsyncConnection[Any]) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._do(conn, batch)

    async def _do(
        self, conn: AsyncConnection[Any], batch: list[tuple[ItemT, asyncio.Future[ResultT]]]
    ) -> None:
        try:
            results = await self.process(conn, [item for item, _ in batch])
        except Exception as exc:
            if self.isolate and len(batch) > 1 and not conn.broken:
                for one in batch:
                    await self._do(conn, [one])
                return
            log.warning("%s of %d items failed: %s", self.name, len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(self.unavailable(str(exc)))
            if conn.broken:
                raise
            return
        self.batches += 1
        self.items += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
