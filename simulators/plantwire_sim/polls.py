"""Simulated time waits for the gateways that poll it (an accelerated run's second rule).

A polled machine (Modbus) has no timestamps: the gateway stamps what it reads when it reads
it, so a state is seen up to one poll late and a state shorter than the gap between two polls
is not seen at all. At ``speed`` x every wall millisecond a starved gateway polls late is
``speed`` simulated milliseconds: on a machine whose cores are kept busy a 150x run's polls
came 40-280 ms apart instead of 10, 6-40 simulated seconds, and the 6 s states of the demo's
press were missed or seen seconds late (availability off by up to 9 pp).

So simulated time runs at most :attr:`Poller.budget_ms` past the last read of a machine's
execution state while a gateway is polling it: the scheduler holds the clock there until the
next read comes (and the read sets it back to where it was held, so that time slows down
rather than jumps, see :meth:`plantwire_sim.clock.SimClock.rebase`). A poller that has not
read for :data:`GONE_S` wall seconds (stopped, disconnected, an outage being simulated) no
longer holds the clock. This applies to accelerated runs only: at 1x a gateway is late by
milliseconds, as on a real plant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

POLL_BUDGET = 2
"""Poll intervals (in simulated time) the clock may run past a polled machine's last read."""
GONE_S = 2.0
"""Wall seconds without a read after which a machine's poller no longer holds the clock."""


@dataclass
class Poller:
    """The gateway polling one machine, as the machine sees it."""

    budget_ms: int
    last_sim_ms: int = 0
    last_wall: float = -1e18
    reads: int = 0


class Polls:
    """Every polled machine's last read; :meth:`limit` bounds simulated time."""

    def __init__(self, now_ms: Callable[[], int], on_read: Callable[[int], None]) -> None:
        self._now_ms = now_ms
        self._on_read = on_read  # given simulated time at the read
        self.pollers: dict[str, Poller] = {}

    def watch(self, code: str, budget_ms: int) -> Callable[[], None]:
        """Watch machine ``code``; returns what its server calls at each read of its state."""
        poller = self.pollers[code] = Poller(max(1, budget_ms))

        def read() -> None:
            poller.reads += 1
            poller.last_wall = time.time()
            poller.last_sim_ms = self._now_ms()
            self._on_read(poller.last_sim_ms)

        return read

    def limit(self, wall: float) -> tuple[int, float] | None:
        """(simulated time not to pass, wall time at which its poller counts as gone), or None
        when no gateway is polling."""
        best: tuple[int, float] | None = None
        for p in self.pollers.values():
            gone_at = p.last_wall + GONE_S
            if gone_at <= wall:
                continue
            bound = p.last_sim_ms + p.budget_ms
            if best is None or bound < best[0]:
                best = (bound, gone_at)
        return best
