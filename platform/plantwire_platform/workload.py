"""Bounds on the work one API process takes on, so that no request can stall the others.

Expensive requests (indicators over long windows, many buckets, whole chains) take one of a
few computation slots; a bounded number wait for one, the rest are refused at once with 503
and ``Retry-After``. A request holding a slot has a deadline, and every query it runs has the
database's ``statement_timeout``; when its client goes away it is cancelled (see
:mod:`plantwire_platform.cancellation`), which cancels its query in the server too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from plantwire_platform.errors import ApiError
from plantwire_platform.translation import Text


@dataclass
class Workload:
    """Computation slots of one API process."""

    slots: int
    queue: int
    deadline_s: float
    _free: asyncio.Semaphore = field(init=False)
    waiting: int = 0
    running: int = 0
    refused: int = 0
    timed_out: int = 0

    def __post_init__(self) -> None:
        self._free = asyncio.Semaphore(self.slots)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block, which must finish within the deadline."""
        if self._free.locked() and self.waiting >= self.queue:
            self.refused += 1
            raise ApiError(
                503,
                "busy",
                Text("workload.busy", running=self.slots, waiting=self.waiting),
                {"Retry-After": "5"},
            )
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            async with asyncio.timeout(self.deadline_s):
                yield
        except TimeoutError:
            self.timed_out += 1
            raise ApiError(
                503,
                "too_long",
                Text("workload.too_long", seconds=f"{self.deadline_s:g}"),
            ) from None
        finally:
            self.running -= 1
            self._free.release()
