"""Two mapped points feeding one canonical state metric of a device.

A CNC's OPC 40501 MachineOperationMode has no MDI; its OPC 40502 CncOperationMode has. A point
may ``override`` some values of another that feeds the same state: :class:`StateMerge`
publishes the overriding value while it lasts, else the other point's, with one sample per
instant when both change together.
"""

from __future__ import annotations

from typing import Any, Protocol


class Member(Protocol):
    """A point that feeds a merged state (a :class:`~plantwire_edge.feed.Feed`)."""

    def merge_into(self, merge: StateMerge, member: int) -> None: ...


_NOTHING = object()


class StateMerge:
    """The mapped points feeding one canonical state metric of a device.

    At each instant the value published is that of the first ``override`` point whose value
    it lists, else that of the point without ``override``. The points' values are collected
    until the node takes the device's samples (every ``batch_ms``) and merged then in time
    order, because the changes of one instant may arrive in any order (an OPC UA publish
    response groups notifications by monitored item). An instant gets a sample when the
    point that wins had a value then (as an unmerged point would) or when what is published
    changes.
    """

    __slots__ = ("events", "key", "overrides", "published", "values")

    def __init__(self, key: int) -> None:
        self.key = key
        self.overrides: list[frozenset[str]] = []
        self.values: dict[int, Any] = {}
        self.published: Any = _NOTHING
        self.events: list[tuple[int, int, int, Any]] = []  # (ts, arrival, member, value)

    def join(self, override: tuple[str, ...]) -> int:
        self.overrides.append(frozenset(override))
        return len(self.overrides) - 1

    def put(self, member: int, value: Any, ts_ms: int) -> None:
        self.events.append((ts_ms, len(self.events), member, value))

    def drain(self) -> list[tuple[int, Any, int]]:
        """The merged samples of the values put since the last call, in time order."""
        events, self.events = sorted(self.events), []
        out: list[tuple[int, Any, int]] = []
        values, i = self.values, 0
        while i < len(events):
            ts, touched = events[i][0], set()
            while i < len(events) and events[i][0] == ts:
                _, _, member, value = events[i]
                values[member] = value
                touched.add(member)
                i += 1
            winner = self._winner()
            if winner is None:
                continue
            effective = values[winner]
            if winner in touched or effective != self.published:
                out.append((self.key, effective, ts))
                self.published = effective
        return out

    def _winner(self) -> int | None:
        values = self.values
        for member, override in enumerate(self.overrides):
            if override and member in values and values[member] in override:
                return member
        for member, override in enumerate(self.overrides):
            if not override and member in values:
                return member
        return None
