"""stopped_within: the wait every loop of the gateways and the platform ends on."""

from __future__ import annotations

import asyncio
import time

from plantwire_bus.runner import stopped_within


async def test_a_stop_already_set_is_seen_with_no_time_left() -> None:
    """A loop that has fallen behind (a Modbus poll slower than its interval) waits 0 s:
    the stop must still be seen, or the loop never ends."""
    stop = asyncio.Event()
    stop.set()
    assert await stopped_within(stop, 0.0)
    assert await stopped_within(stop, -1.0)


async def test_a_stop_set_while_waiting_ends_the_wait_early() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    began = time.monotonic()
    assert await stopped_within(stop, 30.0)
    assert time.monotonic() - began < 10  # woken by the stop, not by the 30 s


async def test_no_stop_waits_the_whole_time() -> None:
    stop = asyncio.Event()
    began = time.monotonic()
    assert not await stopped_within(stop, 0.1)
    assert time.monotonic() - began >= 0.1
    assert not await stopped_within(stop, 0.0)
