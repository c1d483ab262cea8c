"""Versioned mapping tables: native controller enumerations to the canonical machine state.

A tag with ``map = "<table>"`` in the gateway config is published as the canonical metric of
its table (``State/Mode`` or ``State/Execution``) with the canonical value as a string. A native
value missing from its table becomes ``UNKNOWN`` / ``NO_DATA`` and is counted by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC, Execution, Mode

MAPPING_VERSION = "2026.1"

Native = int | str


@dataclass(frozen=True, slots=True)
class StateTable:
    metric: str  # the canonical metric this table feeds
    values: dict[Native, str]
    fallback: str

    def translate(self, native: object) -> tuple[str, bool]:
        """The canonical value and whether the native value was known."""
        key: Native
        if isinstance(native, bool):
            key = int(native)
        elif isinstance(native, int | str):
            key = native.strip().upper() if isinstance(native, str) else native
        elif isinstance(native, float) and native.is_integer():
            key = int(native)
        else:
            return self.fallback, False
        value = self.values.get(key)
        return (value, True) if value is not None else (self.fallback, False)


def _mode(values: dict[Native, Mode]) -> StateTable:
    return StateTable(MODE_METRIC, {k: v.value for k, v in values.items()}, Mode.UNKNOWN.value)


def _execution(values: dict[Native, Execution]) -> StateTable:
    return StateTable(
        EXECUTION_METRIC, {k: v.value for k, v in values.items()}, Execution.NO_DATA.value
    )


M, X = Mode, Execution

TABLES: dict[str, StateTable] = {
    # OPC 40501-1 (Machine Tools) MachineOperationMode
    "opc40501/MachineOperationMode": _mode(
        {0: M.MANUAL, 1: M.AUTO, 2: M.SETUP, 3: M.SEMI_AUTO, 4: M.SERVICE, 5: M.UNKNOWN}
    ),
    # OPC 40502 (CNC Systems) CncOperationMode
    "opc40502/CncOperationMode": _mode({0: M.MANUAL, 1: M.MDI, 2: M.AUTO}),
    # OPC 40502 CncChannelProgramStatus: Stopped, Running, Waiting (dwell), Interrupted, Canceled
    "opc40502/CncChannelProgramStatus": _execution(
        {0: X.IDLE, 1: X.EXECUTING, 2: X.EXECUTING, 3: X.PAUSED, 4: X.IDLE}
    ),
    # OPC 40502 CncChannelStatus: Active, Interrupted, Reset
    "opc40502/CncChannelStatus": _execution({0: X.EXECUTING, 1: X.PAUSED, 2: X.IDLE}),
    # MTConnect ControllerMode and Execution
    "mtconnect/ControllerMode": _mode(
        {
            "AUTOMATIC": M.AUTO,
            "SEMI_AUTOMATIC": M.SEMI_AUTO,
            "MANUAL_DATA_INPUT": M.MDI,
            "MANUAL": M.MANUAL,
            "EDIT": M.SETUP,
        }
    ),
    "mtconnect/Execution": _execution(
        {
            "ACTIVE": X.EXECUTING,
            "READY": X.IDLE,
            "INTERRUPTED": X.PAUSED,
            "FEED_HOLD": X.PAUSED,
            "STOPPED": X.IDLE,
            "OPTIONAL_STOP": X.PAUSED,
            "PROGRAM_STOPPED": X.PAUSED,
            "PROGRAM_COMPLETED": X.IDLE,
            "WAIT": X.PAUSED,
        }
    ),
    # EUROMAP 83 / OPC 40083 MachineModeEnumeration (plastics and rubber machines)
    "euromap83/MachineMode": _mode(
        {0: M.UNKNOWN, 1: M.AUTO, 2: M.SEMI_AUTO, 3: M.MANUAL, 4: M.SETUP, 5: M.UNKNOWN}
    ),
    # Integer codes for controllers without a standard enumeration (legacy PLCs behind Modbus
    # registers, vendor MQTT devices): the register or field documents this table by name.
    "plantwire/ModeCode": _mode(
        {0: M.MANUAL, 1: M.AUTO, 2: M.SETUP, 3: M.SEMI_AUTO, 4: M.MDI, 5: M.SERVICE}
    ),
    "plantwire/ExecutionCode": _execution(
        {0: X.IDLE, 1: X.EXECUTING, 2: X.PAUSED, 3: X.FAULT, 4: X.OFF}
    ),
    # DCS loop modes: automatic and cascade both count as automatic
    "dcs/LoopMode": _mode(
        {"AUTO": M.AUTO, "CAS": M.AUTO, "CASCADE": M.AUTO, "MAN": M.MANUAL, "MANUAL": M.MANUAL}
    ),
}


def table(name: str) -> StateTable:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown mapping table {name!r}; known: {', '.join(TABLES)}") from None
