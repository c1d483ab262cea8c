"""The tasks beside the API stop when it does: a cancellation a task lost (as Python 3.11's
``asyncio.wait_for`` loses one that arrives together with the result it waited for) is
repeated, and a task that never ends is named after the timeout instead of holding the API."""

from __future__ import annotations

import asyncio
import time

from plantwire_bus.runner import cancel_until_ended


async def test_a_task_that_lost_its_cancellation_is_cancelled_again() -> None:
    cancelled = 0

    async def loses_one() -> None:
        nonlocal cancelled
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1  # lost, as wait_for loses it: the task carries on waiting
        await asyncio.Event().wait()

    task = asyncio.create_task(loses_one())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    stuck = await cancel_until_ended([task], 10.0)
    assert stuck == set() and task.cancelled() and cancelled == 1
    assert time.monotonic() - t0 < 5.0  # not the timeout: the next cancellation ended it


async def test_a_task_that_never_ends_is_named_after_the_timeout() -> None:
    done = asyncio.Event()

    async def never_ends() -> None:
        while not done.is_set():
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue

    quick = asyncio.create_task(asyncio.Event().wait())
    stubborn = asyncio.create_task(never_ends())
    await asyncio.sleep(0)
    t0 = time.monotonic()
    stuck = await cancel_until_ended([quick, stubborn], 0.3)
    assert time.monotonic() - t0 >= 0.3
    assert stuck == {stubborn} and quick.cancelled()
    done.set()
    stubborn.cancel()
    await asyncio.gather(stubborn, return_exceptions=True)
