"""Ground truth of a simulation: what every machine really did and which faults it suffered.

Record kinds (JSON Lines, one object per line, ``"kind"`` first):

- ``state``: the machine entered a canonical state (mode, execution, ``cause``);
- ``value``: a native tag took a new value (the machine's real value; faults that distort the
  interface are not applied here);
- ``part``: ``count`` parts (1 when left out) were completed (``scrap`` true when they were
  scrapped; a cycle of good and scrap parts gives a record of each);
- ``fault``: a fault distorted the machine's interface from ``start_ms`` to ``end_ms``;
- ``outage``: a site's gateway had no uplink from ``start_ms`` to ``end_ms`` (it kept reading
  its machines: their interfaces were not down);
- ``registry``: the registry changed at ``ts_ms`` (``machine`` re-declared, ``declared_nc``).

Records are kept in memory (unless ``keep=False``) and, optionally, appended to a file; the
factory writes them in simulated-time order, so the same scenario, seed and start give the
same file. The file is flushed by :meth:`TruthRecorder.flush` and on close.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from plantwire_bus.state import Execution, Mode

from .native import TagValue


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """A native tag value the simulator wrote, with its source timestamp."""

    machine: str
    tag: str
    value: TagValue
    ts_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "value",
            "machine": self.machine,
            "tag": self.tag,
            "value": self.value,
            "ts_ms": self.ts_ms,
        }


@dataclass(frozen=True, slots=True)
class StateRecord:
    """A machine entered a program segment: its canonical state from ``ts_ms`` on."""

    machine: str
    ts_ms: int
    mode: Mode
    execution: Execution
    cause: str = "program"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "state",
            "machine": self.machine,
            "ts_ms": self.ts_ms,
            "mode": self.mode.value,
            "execution": self.execution.value,
            "cause": self.cause,
        }


@dataclass(frozen=True, slots=True)
class PartRecord:
    """``count`` parts were completed at ``ts_ms`` (the end of an EXECUTING program segment)."""

    machine: str
    ts_ms: int
    scrap: bool = False
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        out = {"kind": "part", "machine": self.machine, "ts_ms": self.ts_ms, "scrap": self.scrap}
        return out if self.count == 1 else {**out, "count": self.count}


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault distorted a machine's interface over [start_ms, end_ms)."""

    machine: str
    fault: str
    start_ms: int
    end_ms: int
    origin: str = "scenario"
    """``scenario`` (scheduled) or ``control`` (injected while running)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "fault",
            "machine": self.machine,
            "fault": self.fault,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class OutageRecord:
    """A site's gateway lost its uplink over [start_ms, end_ms)."""

    site: str
    outage: str
    start_ms: int
    end_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "outage",
            "site": self.site,
            "outage": self.outage,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }


@dataclass(frozen=True, slots=True)
class RegistryRecord:
    """From ``ts_ms`` on, the registry declares ``machine`` NC or not."""

    machine: str
    ts_ms: int
    declared_nc: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "registry",
            "machine": self.machine,
            "ts_ms": self.ts_ms,
            "declared_nc": self.declared_nc,
        }


Record = TruthRecord | StateRecord | PartRecord | FaultRecord | OutageRecord | RegistryRecord


def record_from_json(obj: dict[str, Any]) -> Record:
    """Parse one JSON Lines object written by :class:`TruthRecorder`."""
    kind = obj.get("kind")
    if kind == "value":
        return TruthRecord(str(obj["machine"]), str(obj["tag"]), obj["value"], int(obj["ts_ms"]))
    if kind == "state":
        return StateRecord(
            str(obj["machine"]),
            int(obj["ts_ms"]),
            Mode(obj["mode"]),
            Execution(obj["execution"]),
            str(obj.get("cause", "program")),
        )
    if kind == "part":
        return PartRecord(
            str(obj["machine"]), int(obj["ts_ms"]), bool(obj["scrap"]), int(obj.get("count", 1))
        )
    if kind == "fault":
        return FaultRecord(
            str(obj["machine"]),
            str(obj["fault"]),
            int(obj["start_ms"]),
            int(obj["end_ms"]),
            str(obj.get("origin", "scenario")),
        )
    if kind == "outage":
        return OutageRecord(
            str(obj["site"]), str(obj["outage"]), int(obj["start_ms"]), int(obj["end_ms"])
        )
    if kind == "registry":
        return RegistryRecord(str(obj["machine"]), int(obj["ts_ms"]), bool(obj["declared_nc"]))
    raise ValueError(f"unknown truth record kind {kind!r}")


def read_truth_file(path: str | Path) -> list[Record]:
    """All records of a truth file, in the order they were written."""
    with Path(path).open(encoding="utf-8") as f:
        return [record_from_json(json.loads(line)) for line in f if line.strip()]


class TruthRecorder:
    """Collects truth records in memory and optionally appends them to a JSON Lines file."""

    def __init__(
        self, path: str | Path | None = None, *, keep: bool = True, values: bool = True
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.keep = keep
        self.values_wanted = values
        """False: value changes are not recorded (states, parts and faults only)."""
        self.count = 0
        """Records written so far (also when they are not kept)."""
        self._records: list[Record] = []
        self._file: IO[str] | None = (
            self.path.open("a", encoding="utf-8") if self.path is not None else None
        )

    def record_value(self, machine: str, tag: str, value: TagValue, ts_ms: int) -> TruthRecord:
        rec = TruthRecord(machine, tag, value, ts_ms)
        if self.values_wanted:
            self._add(rec)
        return rec

    def record_state(
        self, machine: str, ts_ms: int, mode: Mode, execution: Execution, cause: str = "program"
    ) -> StateRecord:
        rec = StateRecord(machine, ts_ms, mode, execution, cause)
        self._add(rec)
        return rec

    def record_part(
        self, machine: str, ts_ms: int, scrap: bool = False, count: int = 1
    ) -> PartRecord:
        rec = PartRecord(machine, ts_ms, scrap, count)
        self._add(rec)
        return rec

    def record_made(self, machine: str, ts_ms: int, good: int, scrap: int) -> None:
        """A cycle's parts: a record of its good parts and one of its scrap, if any."""
        if good:
            self.record_part(machine, ts_ms, False, good)
        if scrap:
            self.record_part(machine, ts_ms, True, scrap)

    def record_fault(
        self, machine: str, fault: str, start_ms: int, end_ms: int, origin: str = "scenario"
    ) -> FaultRecord:
        rec = FaultRecord(machine, fault, start_ms, end_ms, origin)
        self._add(rec)
        return rec

    def record_outage(self, site: str, outage: str, start_ms: int, end_ms: int) -> OutageRecord:
        rec = OutageRecord(site, outage, start_ms, end_ms)
        self._add(rec)
        return rec

    def record_registry(self, machine: str, ts_ms: int, declared_nc: bool) -> RegistryRecord:
        rec = RegistryRecord(machine, ts_ms, declared_nc)
        self._add(rec)
        return rec

    def _add(self, rec: Record) -> None:
        self.count += 1
        if self.keep:
            self._records.append(rec)
        if self._file is not None:
            self._file.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")

    def flush(self) -> None:
        """Push what was written so far to the file."""
        if self._file is not None:
            self._file.flush()

    def records(self) -> list[Record]:
        """Every record, values and states, in the order they were recorded."""
        return list(self._records)

    def values(self, machine: str | None = None, tag: str | None = None) -> list[TruthRecord]:
        """Value records, optionally only those of one machine and/or one tag."""
        return [
            r
            for r in self._records
            if isinstance(r, TruthRecord)
            and (machine is None or r.machine == machine)
            and (tag is None or r.tag == tag)
        ]

    def states(self, machine: str | None = None) -> list[StateRecord]:
        """State records (segment starts), optionally only those of one machine."""
        return [
            r
            for r in self._records
            if isinstance(r, StateRecord) and (machine is None or r.machine == machine)
        ]

    def parts(self, machine: str | None = None) -> list[PartRecord]:
        """Completed parts, optionally only those of one machine."""
        return [
            r
            for r in self._records
            if isinstance(r, PartRecord) and (machine is None or r.machine == machine)
        ]

    def faults(self, machine: str | None = None) -> list[FaultRecord]:
        """Faults, optionally only those of one machine."""
        return [
            r
            for r in self._records
            if isinstance(r, FaultRecord) and (machine is None or r.machine == machine)
        ]

    def close(self) -> None:
        """Close the file, if any; in-memory records stay available."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TruthRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
