"""Simulated time: ``sim = start + (wall - wall0) * speed``, in epoch milliseconds.

Behaviour durations are in simulated seconds and every source timestamp a simulator writes is
simulated time, so at ``speed`` 600 an eight-hour shift passes in 48 s of wall time. With
``catch_up`` a run that starts in the past replays it at ``speed`` until simulated time reaches
the wall clock, and then keeps pace with it (so it never runs into the future).

The clock and the machines' values never part (the rule of :mod:`plantwire_bus.timeline`):
the scheduler :meth:`~SimClock.hold`\\ s the clock at the next change it has not played, and a
change played late :meth:`~SimClock.rebase`\\ s it, so that simulated time slows down when the
simulator falls behind (a busy machine) instead of jumping past states nobody saw.

The clock also serves an edge gateway reading the simulated machines: in this process as its
:class:`plantwire_edge.clock.Clock` directly, in another through the file given to
:meth:`~SimClock.publish` (``plantwire sim run --clock-file``), so that births, deaths and
gateway-stamped values are on the machines' time line.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plantwire_bus.timeline import NO_HOLD, TimeLine, TimeLineFile

LATE_S = 0.002
"""A change played more than this many wall seconds late slows simulated time down."""


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
        wall0 = time.time() if wall0 is None else wall0
        """Wall time (epoch seconds) at which simulated time was ``start_ms``."""
        self.line = TimeLine(
            start_ms, speed, wall0, catch_up and speed > 1 and start_ms < wall0 * 1000
        )
        self.slowed_s = 0.0
        """Wall seconds by which simulated time was slowed down to keep to the values."""
        self._file: TimeLineFile | None = None

    @property
    def start_ms(self) -> int:
        return self.line.start_ms

    @property
    def speed(self) -> float:
        return self.line.speed

    @property
    def wall0(self) -> float:
        return self.line.wall0

    @property
    def catch_up(self) -> bool:
        """Simulated time stops running ahead once it has reached the wall clock."""
        return self.line.catch_up

    def state(self) -> dict[str, Any]:
        """The clock's parameters now (JSON-ready; a gateway follows them through
        :meth:`publish`, since the simulator changes them while it runs)."""
        line = self.line
        return {
            "start_ms": line.start_ms,
            "speed": line.speed,
            "wall0": line.wall0,
            "catch_up": line.catch_up,
            "hold_ms": None if line.hold_ms == NO_HOLD else line.hold_ms,
            "slowed_s": round(self.slowed_s, 3),
        }

    def publish(self, path: Path) -> None:
        """Keep the clock's time line in ``path`` for gateways in other processes
        (:class:`plantwire_bus.timeline.FollowedClock`)."""
        self._file = TimeLineFile(path, self.line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def now_ms(self) -> int:
        """Simulated time now."""
        return self.line.at(time.time())

    def live(self) -> bool:
        """Whether a replay has caught up with the wall clock."""
        return self.line.live_at(time.time())

    def wall_at(self, sim_ms: int) -> float:
        """Wall time (epoch seconds) at which simulated time reaches ``sim_ms`` (unless held)."""
        return self.line.wall_at(sim_ms)

    def delay_s(self, sim_ms: int) -> float:
        """Wall seconds until simulated time reaches ``sim_ms`` (negative when past)."""
        return self.wall_at(sim_ms) - time.time()

    def hold(self, sim_ms: int | None) -> None:
        """Simulated time goes no further than ``sim_ms`` (None: no limit) until told again."""
        hold = NO_HOLD if sim_ms is None else sim_ms
        if hold != self.line.hold_ms:
            self._set(replace(self.line, hold_ms=hold))

    def rebase(self, sim_ms: int) -> None:
        """A change due at ``sim_ms`` is played now, late: from now on simulated time runs on
        from ``sim_ms`` (it slows down by the delay instead of jumping over it)."""
        wall = time.time()
        line = self.line
        free = line.free_at(wall)
        if free <= sim_ms:
            return
        wall0 = wall - (sim_ms - line.start_ms) / 1000 / line.speed
        if wall0 > line.wall0:
            self.slowed_s += (free - sim_ms) / 1000 / line.speed
            self._set(replace(line, wall0=wall0))

    def _set(self, line: TimeLine) -> None:
        self.line = line
        if self._file is not None:
            self._file.write(line)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SimClock:
        """A clock with the parameters of :meth:`state` (a snapshot: it does not follow the
        simulator's later slowing down; use its published file for that)."""
        return cls(state["start_ms"], state["speed"], state["wall0"], state["catch_up"])


def parse_start(text: str) -> int:
    """An ISO 8601 instant (``Z`` or an offset; naive means UTC) as epoch milliseconds."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date and time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)
