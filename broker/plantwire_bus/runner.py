"""Run a long-lived asyncio component until SIGINT or SIGTERM, then let it stop cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``, waking early when ``stop`` is set; True if it was (also
    when it already was: ``asyncio.wait_for`` with no time left does not look)."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def cancel_until_ended(
    tasks: Iterable[asyncio.Task[Any]], timeout_s: float
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` until they have ended, for ``timeout_s`` at most; those still running.

    One cancellation is not always enough: a task waiting for a pooled connection (the
    partner interface's batchers, as the API stops) waits in psycopg_pool through
    ``asyncio.wait_for``, which on Python 3.11 returns the inner wait's result when the
    connection arrives together with the cancellation, and the cancellation is lost; the task
    then waits for work that never comes. Cancelled again (every 0.1 s), it ends at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = set(tasks)
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.1, deadline - loop.time()))
    return pending


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Call ``main(stop)``; Ctrl-C or SIGTERM sets ``stop``. Returns an exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await main(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
