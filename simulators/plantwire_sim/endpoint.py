"""A machine's interface to the outside world, shared by the OPC UA, Modbus and MQTT sides.

The factory hands every step of the machine's behaviour to :meth:`Endpoint.apply`; the
endpoint keeps the machine's real values, applies the faults active on its interface and
shows the result through its protocol (:meth:`Endpoint.show`).
"""

from __future__ import annotations

from typing import Any

from .behaviour import Step
from .faults import ActiveFaults
from .native import Profile, TagSpec, TagValue
from .scenario import Machine

STORM_VALUES: dict[str, tuple[TagValue, TagValue]] = {
    "AlarmActive": (True, False),
    "AlarmCode": (9999, 0),
    "AlarmSeverity": (100, 0),
    "AlarmMessage": ("Nuisance alarm (storm)", ""),
    "AlarmBit": (True, False),
    "andon": (True, False),
    "alarm.code": (9999, 0),
}
"""Alarm tags an alarm storm toggles: (raised, cleared) values."""
DISTORTIONS = frozenset({"nan", "out_of_range", "clock_jump", "bad_status"})
"""Faults that change how every value is shown."""


class Endpoint:
    """Base of the protocol endpoints: real values, faults, and what the interface shows."""

    protocol = ""

    def __init__(self, machine: Machine, profile: Profile) -> None:
        self.machine = machine
        self.code = machine.code
        self.profile = profile
        self.specs: dict[str, TagSpec] = {t.name: t for t in profile.tags}
        self.current: dict[str, TagValue] = {}
        """The machine's real values (what the interface shows without faults)."""
        behaviour = machine.behaviour
        self.faults = ActiveFaults(
            clock_offset_ms=behaviour.clock_offset_s * 1000,
            clock_drift=behaviour.clock_drift_s_per_min / 60,
        )

    async def apply(self, step: Step) -> None:
        """Take the machine's new values and show them unless the interface is frozen."""
        values = step.values()
        self.current.update(values)
        if values and "freeze" not in self.faults:
            await self.show(step.ts_ms, self.distorted(values))

    def distorted(self, values: dict[str, TagValue]) -> dict[str, TagValue]:
        return {tag: self.faults.distort(self.specs[tag], v) for tag, v in values.items()}

    async def fault_on(self, kind: str, ts_ms: int) -> None:
        """A fault starts (already marked active): distortions show at once."""
        if kind in DISTORTIONS:
            await self.show(ts_ms, self.distorted(self.current))

    async def fault_off(self, kind: str, ts_ms: int) -> None:
        """A fault ended (no longer active): the interface shows the real values again."""
        if kind in DISTORTIONS or kind in ("freeze", "alarm_storm"):
            await self.show(ts_ms, self.distorted(self.current))

    async def storm(self, ts_ms: int, raised: bool) -> None:
        """One alarm of an alarm storm is raised or cleared."""
        values = {
            tag: pair[0 if raised else 1] for tag, pair in STORM_VALUES.items() if tag in self.specs
        }
        if values:
            await self.show(ts_ms, values)

    async def show(self, ts_ms: int, values: dict[str, TagValue]) -> None:
        """Make ``values`` visible through the protocol at (true) time ``ts_ms``."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen or connect."""

    async def stop(self) -> None:
        """Stop listening or disconnect; safe to call more than once."""

    def describe(self) -> dict[str, Any]:
        """Where clients find this machine (for ``sim run`` output)."""
        return {}
