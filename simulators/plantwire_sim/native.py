"""Native vocabularies: the tags a simulated machine exposes and how the gateway reads them.

A profile (CNC, injection moulding, legacy Modbus machine, MQTT station, energy box) lists its
tags as :class:`TagSpec` and renders a :class:`Snapshot` of the machine's canonical activity
into native values. The same specs drive the protocol servers (OPC UA variable types, Modbus
register layout, JSON paths) and :mod:`plantwire_sim.gateway_config`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from plantwire_bus.state import Execution, Mode

TagValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm a machine can raise: code, OPC UA style severity (1..1000) and message."""

    code: int
    severity: int
    text: str


@dataclass(frozen=True, slots=True)
class TagSpec:
    """One native tag: its value type, the metric a gateway publishes it as, and its address.

    ``opcua`` is the variant type name of an OPC UA variable; ``table``/``address``/``type``
    (and ``bit``, ``scale``) place a Modbus value; for MQTT profiles ``name`` is the JSON path.
    """

    name: str
    kind: type[TagValue]
    metric: str
    datatype: str
    map: str | None = None
    override: tuple[str, ...] = ()
    """Canonical values of this tag that win over the other tag mapped to the same metric."""
    core: bool = False
    analog: bool = False
    opcua: str = ""
    table: str = ""
    address: int = -1
    type: str = ""
    bit: int | None = None
    scale: float = 1.0
    absurd: TagValue | None = None


@dataclass(slots=True)
class Snapshot:
    """The canonical situation of a machine at one instant, as profiles see it."""

    ts_ms: int
    mode: Mode
    execution: Execution
    cause: str = "program"
    good: int = 0
    scrap: int = 0
    alarm: Alarm | None = None
    cycle_ms: int = 0
    cycle_end_ms: int | None = field(default=None)

    @property
    def parts(self) -> int:
        return self.good + self.scrap


class Renderer(Protocol):
    """Native values of one machine over one run (keeps its analog values and totals).

    Called at every change of activity and at every sampling instant; analog values are
    drawn afresh on each call while the profile samples (see :meth:`Profile.samples`).
    """

    def render(self, snap: Snapshot) -> dict[str, TagValue]: ...


class Profile(Protocol):
    name: str
    tags: tuple[TagSpec, ...]
    alarms: tuple[Alarm, ...]

    def samples(self, execution: Execution) -> bool:
        """Whether analog values are re-sampled while the machine is in this state."""
        ...

    def renderer(self, noise: random.Random) -> Renderer: ...


def jitter(rng: random.Random, base: float, relative: float, digits: int = 1) -> float:
    """``base`` times a uniform factor in [1 - relative, 1 + relative], rounded."""
    return round(base * rng.uniform(1 - relative, 1 + relative), digits)


# --- canonical state in native encodings used by several profiles --------------------------

MODE_CODE: dict[Mode, int] = {
    Mode.MANUAL: 0,
    Mode.AUTO: 1,
    Mode.SETUP: 2,
    Mode.SEMI_AUTO: 3,
    Mode.MDI: 4,
    Mode.SERVICE: 5,
    Mode.UNKNOWN: 255,
}
"""plantwire/ModeCode (an unknown mode is written as 255, outside the table)."""

EXECUTION_CODE: dict[Execution, int] = {
    Execution.IDLE: 0,
    Execution.EXECUTING: 1,
    Execution.PAUSED: 2,
    Execution.FAULT: 3,
    Execution.OFF: 4,
    Execution.NO_DATA: 255,
}
"""plantwire/ExecutionCode."""

MTCONNECT_MODE: dict[Mode, str] = {
    Mode.AUTO: "AUTOMATIC",
    Mode.SEMI_AUTO: "SEMI_AUTOMATIC",
    Mode.MDI: "MANUAL_DATA_INPUT",
    Mode.MANUAL: "MANUAL",
    Mode.SETUP: "EDIT",
    Mode.SERVICE: "MANUAL",
    Mode.UNKNOWN: "UNAVAILABLE",
}
"""MTConnect ControllerMode (no SERVICE value: reported as MANUAL)."""

MTCONNECT_EXECUTION: dict[Execution, str] = {
    Execution.EXECUTING: "ACTIVE",
    Execution.PAUSED: "INTERRUPTED",
    Execution.IDLE: "READY",
    Execution.FAULT: "STOPPED",
    Execution.OFF: "STOPPED",
    Execution.NO_DATA: "UNAVAILABLE",
}
"""MTConnect Execution (FAULT and OFF both read as STOPPED)."""
