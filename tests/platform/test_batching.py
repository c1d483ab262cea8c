"""Batcher: concurrent items share a statement; a failing item fails only itself with
``isolate``, its whole batch without."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from plantwire_platform.batching import Batcher, Unavailable


class Reciprocal(Batcher[int, float]):
    """1/x for each x, computed by PostgreSQL in one statement per batch."""

    name = "reciprocal"

    async def process(self, conn: AsyncConnection[Any], items: list[int]) -> list[float]:
        cur = await conn.execute(
            "SELECT 1.0 / x FROM unnest(%s::integer[]) WITH ORDINALITY AS t(x, n) ORDER BY n",
            (items,),
        )
        return [float(r[0]) for r in await cur.fetchall()]


class Isolating(Reciprocal):
    isolate = True


async def _run(batcher: Reciprocal, database_url: str, items: list[int]) -> list[Any]:
    async with AsyncConnectionPool(
        database_url, kwargs={"autocommit": True}, min_size=1, max_size=1
    ) as pool:
        task = asyncio.create_task(batcher.run(pool))
        await asyncio.sleep(0)
        try:
            return await asyncio.gather(*(batcher.submit(x) for x in items), return_exceptions=True)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_concurrent_items_share_statements(database_url: str) -> None:
    batcher = Reciprocal(max_batch=100)
    results = await _run(batcher, database_url, list(range(1, 201)))
    assert results == [1.0 / x for x in range(1, 201)]
    assert batcher.items == 200 and batcher.batches <= 4  # submitted together: few statements


async def test_isolate_fails_only_the_bad_item(database_url: str) -> None:
    batcher = Isolating(max_batch=100)
    results = await _run(batcher, database_url, [1, 2, 0, 4])
    assert results[:2] == [1.0, 0.5] and results[3] == 0.25
    assert isinstance(results[2], Unavailable) and "division by zero" in str(results[2])


async def test_without_isolate_the_batch_fails_together(database_url: str) -> None:
    batcher = Reciprocal(max_batch=100)
    results = await _run(batcher, database_url, [1, 0])
    assert all(isinstance(r, Unavailable) for r in results)


async def test_not_running_is_refused() -> None:
    with pytest.raises(Unavailable, match="reciprocal is not running"):
        await Reciprocal(max_batch=1).submit(1)
