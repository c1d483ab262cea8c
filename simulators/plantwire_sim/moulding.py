"""Injection moulding machine of a PLC-controlled line over OPC UA, after EUROMAP 83.

Variables of object ``{code}``:

======================= ======== ==================================================
MachineMode             Int32    EUROMAP 83 MachineModeEnumeration: Other 0, Automatic 1,
                                 SemiAutomatic 2, Manual 3, Setup 4, Sleep 5
                                 (MDI reads as Manual, Service as Other)
ProductionStatus        Int32    the PLC's status word, plantwire/ExecutionCode:
                                 Idle 0, Executing 1, Paused 2, Fault 3, Off 4
ShotCounter             UInt32   +1 per completed cycle (one EXECUTING program segment)
CycleTime               Double   s, time between the last two cycle ends
RejectCounter           UInt32   shots rejected as scrap
JobName                 String
AlarmActive/Code/Severity/Message  as on the CNC
MouldTemperature, BarrelTemperatureZone1..3, InjectionPressure, PowerActive:
                        Double, re-sampled while executing
======================= ======== ==================================================
"""

from __future__ import annotations

import random

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC, Execution, Mode

from .cnc import ALARM_TAGS, alarm_values
from .native import EXECUTION_CODE, Alarm, Snapshot, TagSpec, TagValue, jitter
from .params import InjectionParams

MACHINE_MODE_OF: dict[Mode, int] = {
    Mode.AUTO: 1,
    Mode.SEMI_AUTO: 2,
    Mode.MANUAL: 3,
    Mode.MDI: 3,
    Mode.SETUP: 4,
    Mode.SERVICE: 0,
    Mode.UNKNOWN: 0,
}
_UINT32 = 2**32
_ZONES = ("BarrelTemperatureZone1", "BarrelTemperatureZone2", "BarrelTemperatureZone3")

ALARMS: tuple[Alarm, ...] = (
    Alarm(101, 700, "Barrel heater zone 2 failure"),
    Alarm(214, 500, "Mould protection triggered"),
    Alarm(305, 800, "Hydraulic oil temperature too high"),
    Alarm(412, 300, "Material hopper empty"),
    Alarm(520, 600, "Ejector position fault"),
)


def _analog(name: str, metric: str, absurd: float) -> TagSpec:
    return TagSpec(name, float, metric, "Double", analog=True, opcua="Double", absurd=absurd)


class InjectionProfile:
    name = "injection"
    alarms = ALARMS

    def __init__(self, params: InjectionParams) -> None:
        self.params = params
        self.tags: tuple[TagSpec, ...] = (
            TagSpec(
                "MachineMode",
                int,
                MODE_METRIC,
                "String",
                map="euromap83/MachineMode",
                core=True,
                opcua="Int32",
            ),
            TagSpec(
                "ProductionStatus",
                int,
                EXECUTION_METRIC,
                "String",
                map="plantwire/ExecutionCode",
                core=True,
                opcua="Int32",
            ),
            TagSpec(
                "ShotCounter", int, "Production/PartCount", "UInt32", core=True, opcua="UInt32"
            ),
            TagSpec(
                "CycleTime", float, "Production/CycleTime", "Double", core=True, opcua="Double"
            ),
            TagSpec(
                "RejectCounter", int, "Production/ScrapCount", "UInt32", core=True, opcua="UInt32"
            ),
            TagSpec("JobName", str, "Job/Name", "String", opcua="String"),
            *ALARM_TAGS,
            _analog("MouldTemperature", "Mould/Temperature", -273.2),
            *(_analog(z, f"Barrel/Zone{i}/Temperature", 9_999.0) for i, z in enumerate(_ZONES, 1)),
            _analog("InjectionPressure", "Injection/Pressure", -1.0),
            _analog("PowerActive", "Energy/ActivePower", -1.0),
        )

    def samples(self, execution: Execution) -> bool:
        return execution is Execution.EXECUTING

    def renderer(self, noise: random.Random) -> InjectionRenderer:
        return InjectionRenderer(self.params, noise)


class InjectionRenderer:
    def __init__(self, params: InjectionParams, noise: random.Random) -> None:
        self.params = params
        self.noise = noise
        self.analog: dict[str, TagValue] = {
            "MouldTemperature": 24.0,
            **dict.fromkeys(_ZONES, 24.0),
            "InjectionPressure": 0.0,
            "PowerActive": 0.0,
        }

    def render(self, snap: Snapshot) -> dict[str, TagValue]:
        p = self.params
        values: dict[str, TagValue] = {
            "MachineMode": MACHINE_MODE_OF[snap.mode],
            "ProductionStatus": EXECUTION_CODE[snap.execution],
            "ShotCounter": snap.parts % _UINT32,
            "CycleTime": round(snap.cycle_ms / 1000, 3),
            "RejectCounter": snap.scrap % _UINT32,
            "JobName": p.job_name,
            **alarm_values(snap.alarm),
        }
        a = self.analog
        if snap.execution is Execution.EXECUTING:
            rng = self.noise
            a["MouldTemperature"] = jitter(rng, p.mould_temperature_c, 0.03)
            for zone in _ZONES:
                a[zone] = jitter(rng, p.barrel_temperature_c, 0.02)
            a["InjectionPressure"] = jitter(rng, p.injection_pressure_bar, 0.08)
            a["PowerActive"] = jitter(rng, p.power_kw, 0.15, 2)
        elif snap.execution is Execution.OFF:
            a.update(
                {
                    "MouldTemperature": 24.0,
                    **dict.fromkeys(_ZONES, 24.0),
                    "InjectionPressure": 0.0,
                    "PowerActive": 0.0,
                }
            )
        else:
            a["InjectionPressure"] = 0.0
            a["PowerActive"] = round(p.power_kw * 0.2, 2)  # heaters keep the barrel hot
        values.update(a)
        return values
