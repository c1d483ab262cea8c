"""The versioned mapping tables, value by value."""

from __future__ import annotations

import pytest

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC
from plantwire_edge.mapping import TABLES, table


@pytest.mark.parametrize(
    ("table_name", "native", "canonical", "known"),
    [
        ("opc40501/MachineOperationMode", 0, "MANUAL", True),
        ("opc40501/MachineOperationMode", 1, "AUTO", True),
        ("opc40501/MachineOperationMode", 2, "SETUP", True),
        ("opc40501/MachineOperationMode", 3, "SEMI_AUTO", True),
        ("opc40501/MachineOperationMode", 4, "SERVICE", True),
        ("opc40501/MachineOperationMode", 5, "UNKNOWN", True),
        ("opc40501/MachineOperationMode", 9, "UNKNOWN", False),
        ("opc40502/CncOperationMode", 0, "MANUAL", True),
        ("opc40502/CncOperationMode", 1, "MDI", True),
        ("opc40502/CncOperationMode", 2, "AUTO", True),
        ("opc40502/CncChannelProgramStatus", 0, "IDLE", True),
        ("opc40502/CncChannelProgramStatus", 1, "EXECUTING", True),
        ("opc40502/CncChannelProgramStatus", 2, "EXECUTING", True),
        ("opc40502/CncChannelProgramStatus", 3, "PAUSED", True),
        ("opc40502/CncChannelProgramStatus", 4, "IDLE", True),
        ("opc40502/CncChannelProgramStatus", 2.0, "EXECUTING", True),
        ("opc40502/CncChannelProgramStatus", "x", "NO_DATA", False),
        ("opc40502/CncChannelStatus", 0, "EXECUTING", True),
        ("opc40502/CncChannelStatus", 2, "IDLE", True),
        ("mtconnect/ControllerMode", "AUTOMATIC", "AUTO", True),
        ("mtconnect/ControllerMode", "manual_data_input", "MDI", True),
        ("mtconnect/ControllerMode", "EDIT", "SETUP", True),
        ("mtconnect/Execution", "ACTIVE", "EXECUTING", True),
        ("mtconnect/Execution", "FEED_HOLD", "PAUSED", True),
        ("mtconnect/Execution", "READY", "IDLE", True),
        ("mtconnect/Execution", "PROGRAM_COMPLETED", "IDLE", True),
        ("euromap83/MachineMode", 1, "AUTO", True),
        ("euromap83/MachineMode", 2, "SEMI_AUTO", True),
        ("euromap83/MachineMode", 3, "MANUAL", True),
        ("euromap83/MachineMode", 4, "SETUP", True),
        ("euromap83/MachineMode", 5, "UNKNOWN", True),
        ("plantwire/ModeCode", 4, "MDI", True),
        ("plantwire/ModeCode", 1, "AUTO", True),
        ("plantwire/ExecutionCode", 3, "FAULT", True),
        ("plantwire/ExecutionCode", 4, "OFF", True),
        ("dcs/LoopMode", "CAS", "AUTO", True),
        ("dcs/LoopMode", "MAN", "MANUAL", True),
        ("dcs/LoopMode", None, "UNKNOWN", False),
    ],
)
def test_translate(table_name: str, native: object, canonical: str, known: bool) -> None:
    assert table(table_name).translate(native) == (canonical, known)


def test_every_table_feeds_a_canonical_metric() -> None:
    for name, t in TABLES.items():
        assert t.metric in (MODE_METRIC, EXECUTION_METRIC), name


def test_unknown_table_is_named() -> None:
    with pytest.raises(KeyError, match="unknown mapping table 'nope'"):
        table("nope")
