"""Utility machine watched by an IoT energy box publishing vendor JSON over MQTT.

The box samples every ``sample_s`` in every state (also when the machine is off) and
publishes (not retained)::

    {"dev": "WSH-10", "ts": 1741000000000,
     "run": {"mode": 1, "state": "ACTIVE"},
     "power": {"kw": 14.2, "kvar": 6.05}, "energy": {"kwh": 1.2345}, "pf": 0.92,
     "phases": [{"v": 230.4, "a": 22.3}, {"v": 229.8, "a": 22.4}, {"v": 231.0, "a": 22.2}],
     "alarm": {"code": 0}}

``run.mode`` is a plantwire/ModeCode integer read from the machine's PLC, ``run.state`` an
MTConnect Execution string (FAULT and OFF both read STOPPED); ``energy.kwh`` integrates the
active power since the start of the run; ``ts`` is epoch milliseconds.
"""

from __future__ import annotations

import math
import random
from typing import Any

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC, Execution

from .native import MODE_CODE, MTCONNECT_EXECUTION, Alarm, Snapshot, TagSpec, TagValue, jitter
from .params import EnergyParams

ALARMS: tuple[Alarm, ...] = (
    Alarm(71, 600, "Pump motor overload"),
    Alarm(72, 400, "Bath temperature out of band"),
    Alarm(73, 800, "Heater contactor fault"),
)
PHASES = (0, 1, 2)


def _analog(name: str, metric: str, absurd: float, core: bool = False) -> TagSpec:
    return TagSpec(name, float, metric, "Double", analog=True, core=core, absurd=absurd)


TAGS: tuple[TagSpec, ...] = (
    TagSpec("run.mode", int, MODE_METRIC, "String", map="plantwire/ModeCode", core=True),
    TagSpec("run.state", str, EXECUTION_METRIC, "String", map="mtconnect/Execution", core=True),
    _analog("power.kw", "Energy/ActivePower", -1e6, core=True),
    _analog("energy.kwh", "Energy/ActiveEnergy", -1.0, core=True),
    _analog("power.kvar", "Energy/ReactivePower", -1e6),
    _analog("pf", "Energy/PowerFactor", 7.0),
    *(_analog(f"phases[{i}].v", f"Energy/L{i + 1}/Voltage", 99_999.0) for i in PHASES),
    *(_analog(f"phases[{i}].a", f"Energy/L{i + 1}/Current", -1.0) for i in PHASES),
    TagSpec("alarm.code", int, "Alarm/Code", "UInt32"),
)


class EnergyProfile:
    name = "energy"
    alarms = ALARMS
    tags = TAGS
    timestamp_path = "ts"
    timestamp_format = "epoch_ms"
    retain = False
    periodic = True

    def __init__(self, params: EnergyParams) -> None:
        self.params = params

    def samples(self, execution: Execution) -> bool:
        return True

    def renderer(self, noise: random.Random) -> EnergyRenderer:
        return EnergyRenderer(self.params, noise)

    def envelope(self, code: str, ts: str | int, seq: int) -> dict[str, Any]:
        return {"dev": code, "ts": ts}


class EnergyRenderer:
    def __init__(self, params: EnergyParams, noise: random.Random) -> None:
        self.params = params
        self.noise = noise
        self.kw = 0.0
        self.kwh = 0.0
        self.last_ms: int | None = None

    def render(self, snap: Snapshot) -> dict[str, TagValue]:
        p, rng = self.params, self.noise
        if self.last_ms is not None:
            self.kwh += self.kw * (snap.ts_ms - self.last_ms) / 3_600_000
        self.last_ms = snap.ts_ms
        if snap.execution is Execution.EXECUTING:
            kw = jitter(rng, p.rated_kw, 0.1, 2)
        elif snap.execution is Execution.OFF:
            kw = 0.0
        else:
            kw = jitter(rng, p.idle_kw, 0.1, 2)
        self.kw = kw
        pf = p.power_factor if kw else 1.0
        values: dict[str, TagValue] = {
            "run.mode": MODE_CODE[snap.mode],
            "run.state": MTCONNECT_EXECUTION[snap.execution],
            "power.kw": kw,
            "energy.kwh": round(self.kwh, 4),
            "power.kvar": round(kw * math.tan(math.acos(pf)), 2),
            "pf": pf,
            "alarm.code": snap.alarm.code if snap.alarm else 0,
        }
        for i in PHASES:
            volts = jitter(rng, p.voltage_v, 0.01)
            values[f"phases[{i}].v"] = volts
            values[f"phases[{i}].a"] = round(kw * 1000 / (3 * volts * pf), 2)
        return values
