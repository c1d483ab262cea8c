"""CNC machine tool over OPC UA, with variables after OPC 40501-1 and OPC 40502.

Variables of object ``{code}`` (all ``ns=<NAMESPACE_URI>;s={code}.{Tag}``):

==================== ======== ======================================================
MachineOperationMode Int32    OPC 40501-1: Manual 0, Automatic 1, Setup 2,
                              AutoWithManualIntervention 3, Service 4, Other 5
                              (MDI has no value and reads as Manual)
ProgramStatus        Int32    OPC 40502 CncChannelProgramStatus: Stopped 0, Running 1,
                              Waiting 2, Interrupted 3, Canceled 4
SpindleSpeed         Double   rpm, ``spindle_rpm`` x U(0.98, 1.02) while executing
PartCount            UInt32   +1 at the end of every EXECUTING program segment
OperationMode        Int32    OPC 40502 CncOperationMode: Manual 0, MDA 1, Automatic 2
ChannelState         Int32    OPC 40502 CncChannelStatus: Active 0, Interrupted 1, Reset 2
ProgramName          String   the loaded program (``MDI`` in MDI)
FeedOverride         Double   %, 0 during a feed hold
ScrapCount           UInt32   parts counted as scrap
AlarmActive          Boolean  an alarm is pending
AlarmCode/Severity   UInt32 / UInt16 (1..1000), 0 without alarm
AlarmMessage         String
SpindleLoad, FeedRate, PositionX/Y/Z, SpindleTemperature, PowerActive, Sensor01..NN:
                     Double, re-sampled while executing
==================== ======== ======================================================
"""

from __future__ import annotations

import random

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC, Execution, Mode

from .native import Alarm, Snapshot, TagSpec, TagValue, jitter
from .params import CncParams

MACHINE_OPERATION_MODE = "MachineOperationMode"
PROGRAM_STATUS = "ProgramStatus"
SPINDLE_SPEED = "SpindleSpeed"
PART_COUNT = "PartCount"

MACHINE_OPERATION_MODE_OF: dict[Mode, int] = {
    Mode.MANUAL: 0,
    Mode.MDI: 0,
    Mode.AUTO: 1,
    Mode.SETUP: 2,
    Mode.SEMI_AUTO: 3,
    Mode.SERVICE: 4,
    Mode.UNKNOWN: 5,
}
PROGRAM_STATUS_OF: dict[Execution, int] = {
    Execution.EXECUTING: 1,
    Execution.PAUSED: 3,
    Execution.IDLE: 0,
    Execution.FAULT: 4,
    Execution.OFF: 0,
    Execution.NO_DATA: 0,
}
CNC_OPERATION_MODE_OF: dict[Mode, int] = {Mode.AUTO: 2, Mode.SEMI_AUTO: 2, Mode.MDI: 1}
CHANNEL_STATE_OF: dict[Execution, int] = {
    Execution.EXECUTING: 0,
    Execution.PAUSED: 1,
    Execution.FAULT: 1,
}

SPINDLE_NOISE = (0.98, 1.02)
"""Range of the factor applied to ``spindle_rpm`` while executing."""
_UINT32 = 2**32

ALARMS: tuple[Alarm, ...] = (
    Alarm(1010, 700, "Spindle overload"),
    Alarm(2041, 400, "Tool life expired"),
    Alarm(3005, 800, "Axis X following error too large"),
    Alarm(4012, 300, "Coolant level low"),
    Alarm(5100, 900, "Emergency stop pressed"),
    Alarm(6021, 600, "Hydraulic pressure low"),
)

ALARM_TAGS: tuple[TagSpec, ...] = (
    TagSpec("AlarmActive", bool, "Alarm/Active", "Boolean", opcua="Boolean"),
    TagSpec("AlarmCode", int, "Alarm/Code", "UInt32", opcua="UInt32"),
    TagSpec("AlarmSeverity", int, "Alarm/Severity", "UInt16", opcua="UInt16"),
    TagSpec("AlarmMessage", str, "Alarm/Message", "String", opcua="String"),
)


def alarm_values(alarm: Alarm | None) -> dict[str, TagValue]:
    """The four alarm variables shared by the OPC UA profiles."""
    return {
        "AlarmActive": alarm is not None,
        "AlarmCode": alarm.code if alarm else 0,
        "AlarmSeverity": alarm.severity if alarm else 0,
        "AlarmMessage": alarm.text if alarm else "",
    }


def _analog(name: str, metric: str, absurd: float) -> TagSpec:
    return TagSpec(name, float, metric, "Double", analog=True, opcua="Double", absurd=absurd)


class CncProfile:
    """The CNC vocabulary of one machine (its sensor count is a parameter)."""

    name = "cnc"
    alarms = ALARMS

    def __init__(self, params: CncParams, spindle_rpm: float) -> None:
        self.params = params
        self.spindle_rpm = spindle_rpm
        self.sensors = tuple(f"Sensor{i:02d}" for i in range(1, params.sensors + 1))
        self.tags: tuple[TagSpec, ...] = (
            TagSpec(
                MACHINE_OPERATION_MODE,
                int,
                MODE_METRIC,
                "String",
                map="opc40501/MachineOperationMode",
                core=True,
                opcua="Int32",
            ),
            TagSpec(
                PROGRAM_STATUS,
                int,
                EXECUTION_METRIC,
                "String",
                map="opc40502/CncChannelProgramStatus",
                core=True,
                opcua="Int32",
            ),
            TagSpec(
                SPINDLE_SPEED,
                float,
                "Spindle/Speed",
                "Double",
                core=True,
                analog=True,
                opcua="Double",
                absurd=999_999.0,
            ),
            TagSpec(PART_COUNT, int, "Production/PartCount", "UInt32", core=True, opcua="UInt32"),
            # MDI shows only here (OPC 40501 reads it as Manual): it overrides the mode above
            TagSpec(
                "OperationMode",
                int,
                MODE_METRIC,
                "String",
                map="opc40502/CncOperationMode",
                override=(Mode.MDI.value,),
                core=True,
                opcua="Int32",
            ),
            TagSpec("ChannelState", int, "Cnc/ChannelState", "Int32", opcua="Int32"),
            TagSpec("ProgramName", str, "Program/Name", "String", opcua="String"),
            TagSpec("FeedOverride", float, "Feed/Override", "Double", opcua="Double"),
            TagSpec(
                "ScrapCount", int, "Production/ScrapCount", "UInt32", core=True, opcua="UInt32"
            ),
            *ALARM_TAGS,
            _analog("SpindleLoad", "Spindle/Load", 9_999.0),
            _analog("FeedRate", "Feed/Rate", -1.0),
            _analog("PositionX", "Axis/X/Position", 1e9),
            _analog("PositionY", "Axis/Y/Position", 1e9),
            _analog("PositionZ", "Axis/Z/Position", 1e9),
            _analog("SpindleTemperature", "Spindle/Temperature", -273.2),
            _analog("PowerActive", "Energy/ActivePower", -1.0),
            *(_analog(s, f"Condition/{s}", 1e9) for s in self.sensors),
        )

    def samples(self, execution: Execution) -> bool:
        return execution is Execution.EXECUTING

    def renderer(self, noise: random.Random) -> CncRenderer:
        return CncRenderer(self, noise)


class CncRenderer:
    def __init__(self, profile: CncProfile, noise: random.Random) -> None:
        self.profile = profile
        self.noise = noise
        self.analog: dict[str, TagValue] = {
            "SpindleLoad": 0.0,
            "FeedRate": 0.0,
            "PositionX": 0.0,
            "PositionY": 0.0,
            "PositionZ": 0.0,
            "SpindleTemperature": 24.0,
            "PowerActive": 0.0,
            **dict.fromkeys(profile.sensors, 0.0),
        }

    def render(self, snap: Snapshot) -> dict[str, TagValue]:
        p = self.profile.params
        executing = snap.execution is Execution.EXECUTING
        rpm = self.profile.spindle_rpm
        spindle = round(rpm * self.noise.uniform(*SPINDLE_NOISE), 1) if executing and rpm else 0.0
        values: dict[str, TagValue] = {
            MACHINE_OPERATION_MODE: MACHINE_OPERATION_MODE_OF[snap.mode],
            PROGRAM_STATUS: PROGRAM_STATUS_OF[snap.execution],
            SPINDLE_SPEED: spindle,
            PART_COUNT: snap.parts % _UINT32,
            "OperationMode": CNC_OPERATION_MODE_OF.get(snap.mode, 0),
            "ChannelState": CHANNEL_STATE_OF.get(snap.execution, 2),
            "ProgramName": "MDI" if snap.mode is Mode.MDI else p.program_name,
            "FeedOverride": 0.0 if snap.cause == "feed_hold" else p.feed_override_pct,
            "ScrapCount": snap.scrap % _UINT32,
            **alarm_values(snap.alarm),
        }
        a = self.analog
        if executing:
            rng = self.noise
            a["SpindleLoad"] = jitter(rng, p.spindle_load_pct, 0.25)
            a["FeedRate"] = jitter(rng, p.feed_rate_mm_min, 0.1)
            for axis, travel in zip(
                ("PositionX", "PositionY", "PositionZ"), p.travel_mm, strict=True
            ):
                a[axis] = round(rng.uniform(0.0, travel), 3)
            a["SpindleTemperature"] = round(rng.uniform(30.0, 38.0), 1)
            a["PowerActive"] = jitter(rng, p.power_kw, 0.15, 2)
            for sensor in self.profile.sensors:
                a[sensor] = round(rng.gauss(1.0, 0.2), 3)
        else:
            a["SpindleLoad"] = 0.0
            a["FeedRate"] = 0.0
            idle = snap.execution is not Execution.OFF
            a["PowerActive"] = round(p.power_kw * 0.08, 2) if idle else 0.0
        values.update(a)
        return values
