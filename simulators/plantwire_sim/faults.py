"""Faults: the ways simulated equipment and its interfaces fail, on schedule or on demand.

A fault distorts what a machine's interface shows, never what the machine does: the ground
truth keeps the machine's real states and values and records each fault as an interval
(:class:`~plantwire_sim.truth.FaultRecord`). Kinds:

============ ======================== ==================================================
kind         protocols                effect while active
============ ======================== ==================================================
restart      opcua, modbus, mqtt      the server (or device connection) is down, then
                                      comes back (an OPC UA server shared by several
                                      machines restarts for all of them)
drop         opcua, modbus, mqtt      open connections are cut (MQTT: without DISCONNECT,
                                      so the broker publishes nothing for it; the device
                                      stays silent until the fault ends)
freeze       opcua, modbus, mqtt      values stop changing (an energy box keeps sending
                                      the frozen values with fresh timestamps)
clock_jump   opcua, mqtt              source timestamps restart at 2000-01-01T00:00:00Z
nan          opcua, modbus, mqtt      analog values read NaN (Modbus: float32 registers
                                      only; MQTT: a bare NaN token in the JSON)
out_of_range opcua, modbus, mqtt      analog values read an absurd value
bad_status   opcua, modbus            OPC UA: StatusCode BadSensorFailure on every
                                      variable; Modbus: exception 04 on every read
alarm_storm  opcua, modbus, mqtt      alarms are raised and cleared ``rate_per_s`` times
                                      per simulated second
malformed    mqtt                     payloads are broken (truncated, not JSON, wrong
                                      types, missing fields)
============ ======================== ==================================================

At the end of a fault the interface shows the machine's current values again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from .native import TagSpec, TagValue
from .schedule import Schedule

FaultKind = Literal[
    "restart",
    "drop",
    "freeze",
    "clock_jump",
    "nan",
    "out_of_range",
    "bad_status",
    "alarm_storm",
    "malformed",
    "silent",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

FAULT_PROTOCOLS: dict[str, frozenset[str]] = {
    "restart": frozenset({"opcua", "modbus", "mqtt"}),
    "drop": frozenset({"opcua", "modbus", "mqtt"}),
    "freeze": frozenset({"opcua", "modbus", "mqtt"}),
    "clock_jump": frozenset({"opcua", "mqtt"}),
    "nan": frozenset({"opcua", "modbus", "mqtt"}),
    "out_of_range": frozenset({"opcua", "modbus", "mqtt"}),
    "bad_status": frozenset({"opcua", "modbus"}),
    "alarm_storm": frozenset({"opcua", "modbus", "mqtt"}),
    "malformed": frozenset({"mqtt"}),
    "silent": frozenset({"mqtt"}),  # stops publishing, stays connected: no Will, no word
}

CLOCK_RESET_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: where a reset PLC clock starts counting."""


class FaultSpec(Schedule):
    """A scheduled fault of a scenario: ``at_s`` simulated seconds after the start, or ``at``
    a local time in its machine's site's time zone (see :mod:`plantwire_sim.schedule`)."""

    machine: str
    kind: FaultKind
    rate_per_s: float = Field(default=10.0, gt=0, le=1000, description="alarm_storm only")


def check_applicable(kind: str, protocol: str, machine: str) -> None:
    """Raise ValueError when ``kind`` cannot happen to a machine speaking ``protocol``."""
    if kind not in FAULT_PROTOCOLS:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
    if protocol not in FAULT_PROTOCOLS[kind]:
        allowed = ", ".join(sorted(FAULT_PROTOCOLS[kind]))
        raise ValueError(
            f"fault {kind} does not apply to {machine} ({protocol}); it applies to {allowed}"
        )


@dataclass
class ActiveFaults:
    """The faults active on one machine's interface, by kind, with their start (sim ms)."""

    started: dict[str, int] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    clock_offset_ms: float = 0.0
    """The machine's own clock: this far ahead of true time at the run's start..."""
    clock_drift: float = 0.0
    """...running this many milliseconds further ahead per true millisecond."""
    _origin_ms: int | None = None

    def __contains__(self, kind: object) -> bool:
        return kind in self.started

    def begin(self, kind: str, ts_ms: int) -> bool:
        """Count one more occurrence of ``kind``; True when it was not active before."""
        depth = self.depth.get(kind, 0)
        self.depth[kind] = depth + 1
        if depth == 0:
            self.started[kind] = ts_ms
        return depth == 0

    def end(self, kind: str) -> bool:
        """Count one occurrence less; True when ``kind`` is no longer active."""
        depth = self.depth.get(kind, 0) - 1
        if depth > 0:
            self.depth[kind] = depth
            return False
        self.depth.pop(kind, None)
        self.started.pop(kind, None)
        return True

    def timestamp(self, ts_ms: int) -> int:
        """The source timestamp the interface shows for the true time ``ts_ms``: the machine's
        clock (skewed and drifting, from its first timestamp on), unless a clock jump reset
        it."""
        start = self.started.get("clock_jump")
        if start is not None:
            return CLOCK_RESET_MS + (ts_ms - start)
        if self._origin_ms is None:
            self._origin_ms = ts_ms
        skew = self.clock_offset_ms + self.clock_drift * (ts_ms - self._origin_ms)
        return ts_ms + round(skew)

    def distort(self, spec: TagSpec, value: TagValue) -> TagValue:
        """The value the interface shows (NaN or absurd values on analog tags)."""
        if not spec.analog:
            return value
        if "nan" in self.started and spec.kind is float:
            return math.nan
        if "out_of_range" in self.started and spec.absurd is not None:
            return spec.absurd
        return value
