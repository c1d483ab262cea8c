"""Where an NDEATH goes on its edge node's time line.

An NDEATH carries no time of its own worth using: a Will is composed when the node connects
and published by the broker when the connection is lost. Stamped with the platform's arrival
time it would land on another time line than the node's births and values whenever the
node's clock is not the platform's: a host clock that is off, or a gateway following an
accelerated simulation (its clock runs ``speed`` times the wall clock). So the death is
stamped from the node's last message: its payload timestamp (node clock) plus the wall time
elapsed since its arrival, times the node's clock rate (the NBIRTH metric
:data:`~plantwire_bus.extension.CLOCK_RATE`). A node that does not declare a rate (a
third-party edge node) is stamped with the arrival time, as by any host; so is a node at
rate 1 whose projection is within :data:`NO_SKEW_MS` of arrival (an honest clock: the
difference is the last message's delivery delay). In every case the death is never before
the session's birth or its last value.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_SKEW_MS = 2_000
"""At rate 1, a projection this close to arrival is the delivery delay of the last message,
not a clock off: the arrival time is kept (the gateway's tolerance for a device clock)."""

MAX_PROJECTION_MS = 24 * 3600 * 1000
"""A projection further than this past arrival is not believed (a rate or a silence no real
node has: a third party declaring ``Clock/Rate`` 1e12, say): the arrival time is kept, as for a
node that declares no rate, so that no death lands where no sample may (a day ahead)."""


@dataclass(slots=True)
class NodeTrack:
    """What one ingest worker saw last of an edge node's session."""

    birth_ts: int  # the session's NBIRTH payload timestamp
    node_ms: int  # the newest payload timestamp of the session (node clock)
    arrival_ms: int  # when that message arrived (platform clock)
    last_value_ms: int  # the latest time of a value of the session (node clock)

    def saw(self, node_ms: int, arrival_ms: int, last_value_ms: int) -> None:
        if node_ms >= self.node_ms:
            self.node_ms, self.arrival_ms = node_ms, arrival_ms
        self.last_value_ms = max(self.last_value_ms, last_value_ms)


def death_time(
    arrival_ms: int, rate: float | None, anchor: tuple[int, int] | None, floor_ms: int
) -> int:
    """The NDEATH time on the node's line: ``anchor`` is (payload timestamp, arrival) of its
    last message, ``rate`` its declared clock rate (None: not declared), ``floor_ms`` the
    session's birth or last value, whichever is later."""
    ts = arrival_ms
    if rate is not None and anchor is not None:
        node_ms, then_ms = anchor
        ahead = node_ms - arrival_ms + max(0, arrival_ms - then_ms) * rate
        if ahead <= MAX_PROJECTION_MS and (abs(rate - 1.0) > 1e-9 or abs(ahead) > NO_SKEW_MS):
            ts = arrival_ms + round(ahead)
    return max(ts, floor_ms)


def node_death_time(
    arrival_ms: int,
    birth_ts: int | None,
    rate: float | None,
    born_ms: int | None,
    track: NodeTrack | None,
) -> int:
    """An NDEATH's time from the node's row (its session's birth, declared clock rate and
    the birth's arrival) and what this worker saw of that session, if it did."""
    if birth_ts is None:
        return arrival_ms  # never born: nothing to place it by
    anchor: tuple[int, int] | None
    if track is not None and track.birth_ts == birth_ts:
        anchor = (track.node_ms, track.arrival_ms)
        floor = max(birth_ts, track.last_value_ms)
    else:  # the session's messages went to other workers: its birth is the anchor
        anchor = (birth_ts, born_ms) if born_ms is not None else None
        floor = birth_ts
    return death_time(arrival_ms, rate, anchor, floor)


def declared_rate(value: object) -> float | None:
    """A birth's clock rate metric value, None unless a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    rate = float(value)
    return rate if 0.0 < rate < float("inf") else None
