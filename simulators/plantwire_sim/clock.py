"""Simulated time: ``sim = start + (wall - wall0) * speed``, in epoch milliseconds.

Behaviour durations are in simulated seconds and every source timestamp a simulator writes is
simulated time, so at ``speed`` 600 an eight-hour shift passes in 48 s of wall time. With
``catch_up`` a run that starts in the past replays it at ``speed`` until simulated time reaches
the wall clock, and then keeps pace with it (so it never runs into the future).

The clock also serves an edge gateway reading the simulated machines (its ``now_ms`` is the
gateway's :class:`plantwire_edge.clock.Clock`), so that births, deaths and gateway-stamped
values are on the machines' time line.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


class SimClock:
    """Maps wall-clock time to simulated time and back."""

    def __init__(
        self,
        start_ms: int,
        speed: float = 1.0,
        wall0: float | None = None,
        catch_up: bool = False,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, not {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self.wall0 = time.time() if wall0 is None else wall0
        """Wall time (epoch seconds) at which simulated time was ``start_ms``."""
        self.catch_up = catch_up and speed > 1 and start_ms < self.wall0 * 1000
        """Simulated time stops running ahead once it has reached the wall clock."""

    def state(self) -> dict[str, Any]:
        """What another process needs to run a clock in step with this one (JSON-ready)."""
        return {
            "start_ms": self.start_ms,
            "speed": self.speed,
            "wall0": self.wall0,
            "catch_up": self.catch_up,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SimClock:
        """A clock in step with the one whose :meth:`state` this is (same wall clock)."""
        return cls(state["start_ms"], state["speed"], state["wall0"], state["catch_up"])

    def now_ms(self) -> int:
        """Simulated time now."""
        wall = time.time()
        sim = self.start_ms + round((wall - self.wall0) * 1000 * self.speed)
        return min(sim, round(wall * 1000)) if self.catch_up else sim

    def wall_at(self, sim_ms: int) -> float:
        """Wall time (epoch seconds) at which simulated time reaches ``sim_ms``."""
        wall = self.wall0 + (sim_ms - self.start_ms) / 1000 / self.speed
        return max(wall, sim_ms / 1000) if self.catch_up else wall

    def delay_s(self, sim_ms: int) -> float:
        """Wall seconds until simulated time reaches ``sim_ms`` (negative when past)."""
        return self.wall_at(sim_ms) - time.time()


def parse_start(text: str) -> int:
    """An ISO 8601 instant (``Z`` or an offset; naive means UTC) as epoch milliseconds."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date and time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)
