"""Simulated time waits for the broker to take what the MQTT devices publish (an accelerated
run's third rule, beside the held next change and :mod:`plantwire_sim.polls`).

A device's message is handed to its MQTT client's network thread when it is played; on a busy
machine that thread can be a few wall milliseconds late sending it, and at 600x every wall
millisecond is 0.6 simulated seconds. A gateway that asks the broker whether a device fell
silent (:mod:`plantwire_edge.mqtt_device`) would then be told yes about a device whose next
message was played but is still in the simulator's hands, and the device would be taken
offline for nothing. So simulated time runs at most one publishing interval (the device's
``budget_ms``) past a message the broker has not acknowledged (PUBACK, QoS 1) yet: the
scheduler holds the clock there until it has. A message unacknowledged for :data:`GONE_S`
wall seconds (a connection being lost) no longer holds it. At 1x this never binds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

GONE_S = 2.0
"""Wall seconds after which an unacknowledged message no longer holds the clock."""


class Deliveries:
    """The MQTT devices' messages the broker has not acknowledged yet."""

    def __init__(self, on_taken: Callable[[], None]) -> None:
        self._on_taken = on_taken  # at each acknowledgement: the clock may run on
        self._pending: dict[int, tuple[int, float]] = {}  # token -> (bound, wall sent)
        self._tokens = itertools.count()
        self.sent = 0

    def watch(self, budget_ms: int) -> Callable[[int, asyncio.Future[None]], None]:
        """What a device with publishing interval ``budget_ms`` calls for each message it
        publishes: (its timestamp, the future its client completes on the broker's PUBACK)."""
        budget = max(1, budget_ms)

        def sent(ts_ms: int, acknowledged: asyncio.Future[None]) -> None:
            token = next(self._tokens)
            self._pending[token] = (ts_ms + budget, time.time())
            self.sent += 1
            acknowledged.add_done_callback(lambda _: self._taken(token))

        return sent

    def _taken(self, token: int) -> None:
        if self._pending.pop(token, None) is not None:
            self._on_taken()

    def limit(self, wall: float) -> tuple[int, float] | None:
        """(simulated time not to pass, wall time at which its message no longer holds it),
        or None when the broker has acknowledged everything."""
        best: tuple[int, float] | None = None
        for token, (bound, sent) in list(self._pending.items()):
            gone_at = sent + GONE_S
            if gone_at <= wall:
                del self._pending[token]
                continue
            if best is None or bound < best[0]:
                best = (bound, gone_at)
        return best
