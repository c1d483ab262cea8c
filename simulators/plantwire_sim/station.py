"""Manual workstation terminal: operator-confirmed counts as vendor JSON over MQTT.

The terminal publishes its whole status document (retained) whenever something changes::

    {"terminal": "STN-05", "ts": "2025-03-03T08:00:01.250Z", "seq": 17,
     "state": {"mode": "MANUAL", "status": 1}, "counts": {"good": 12, "scrap": 1},
     "operator": "W001", "order": "WO-0001", "andon": false}

``state.mode`` is an MTConnect ControllerMode string, ``state.status`` a
plantwire/ExecutionCode integer, ``counts.good`` goes up when the operator confirms a part at
the end of an EXECUTING program segment (``counts.scrap`` when the part is scrapped) and
``andon`` is pulled while an alarm is pending.
"""

from __future__ import annotations

import random
from typing import Any

from plantwire_bus.state import EXECUTION_METRIC, GOOD_COUNT_METRIC, MODE_METRIC, Execution

from .native import (
    EXECUTION_CODE,
    MTCONNECT_MODE,
    Alarm,
    Snapshot,
    TagSpec,
    TagValue,
)
from .params import StationParams

ALARMS: tuple[Alarm, ...] = (
    Alarm(1, 500, "Material missing"),
    Alarm(2, 300, "Quality question"),
    Alarm(3, 700, "Fixture damaged"),
)

TAGS: tuple[TagSpec, ...] = (
    TagSpec("state.mode", str, MODE_METRIC, "String", map="mtconnect/ControllerMode", core=True),
    TagSpec(
        "state.status", int, EXECUTION_METRIC, "String", map="plantwire/ExecutionCode", core=True
    ),
    TagSpec("counts.good", int, GOOD_COUNT_METRIC, "UInt32", core=True),
    TagSpec("counts.scrap", int, "Production/ScrapCount", "UInt32", core=True),
    TagSpec("operator", str, "Operator/Id", "String"),
    TagSpec("order", str, "Production/WorkOrder", "String"),
    TagSpec("andon", bool, "Alarm/Active", "Boolean"),
)


class StationProfile:
    name = "station"
    alarms = ALARMS
    tags = TAGS
    timestamp_path = "ts"
    timestamp_format = "iso8601"
    retain = True
    periodic = False

    def __init__(self, params: StationParams) -> None:
        self.params = params

    def samples(self, execution: Execution) -> bool:
        return False

    def renderer(self, noise: random.Random) -> StationRenderer:
        return StationRenderer(self.params)

    def envelope(self, code: str, ts: str | int, seq: int) -> dict[str, Any]:
        return {"terminal": code, "ts": ts, "seq": seq}


class StationRenderer:
    def __init__(self, params: StationParams) -> None:
        self.params = params

    def render(self, snap: Snapshot) -> dict[str, TagValue]:
        return {
            "state.mode": MTCONNECT_MODE[snap.mode],
            "state.status": EXECUTION_CODE[snap.execution],
            "counts.good": snap.good,
            "counts.scrap": snap.scrap,
            "operator": self.params.operator,
            "order": self.params.work_order,
            "andon": snap.alarm is not None,
        }
