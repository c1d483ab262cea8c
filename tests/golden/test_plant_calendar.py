"""The scenario format's plant calendar (issue 14, point 5) through the whole data path at
60x: a fault at a local time of the site, a line with its own shifts and a planned
maintenance window, several parts a cycle with fixed scrap, and a machine that never
connects. The scenario is written for the run (its maintenance and shifts are local times
around the run's start), its window's figures computed by hand below, checked against
:mod:`plantwire_sim.expected`'s ground truth, and the platform's against the truth (NC rates
within 1 percentage point, OEE within 2), as the golden tests do.

Site CAL1 in Shanghai; the run starts at t0, a whole local minute an hour ago; every machine
starts its program at t0 (``phase_s = 0``); window 180-780 s after t0 (600 s):

- CL-CUT (line CL1, all day): 20 s AUTO EXECUTING, 10 s IDLE; 4 parts a cycle, 1 of them
  scrap; ideal cycle 4 s a part. 20 cycles end in the window (200 .. 770 s): 80 parts, 20
  scrap, quality 0.75; EXECUTING 400 s, availability 400/600 = 0.6667, performance
  4 x 80 / 400 = 0.8.
- CL-BOR (CL1): 200 s EXECUTING, 500 s IDLE; its OPC UA server restarts every day at the
  local time t0 + 5 min, for 120 s (mid-shift, while it idles): seen 480 of 600 s, coverage
  0.8 < 0.9; EXECUTING 180-200 and 700-780 s = 100 s, availability 0.1667; one good part
  (200 s).
- CL-OLD (CL1, Modbus, registered as not NC): its server is down from t0 on, so it never
  connects in the window: not observed, not networked, no parts although it made some. The
  window starts 3 minutes in because the platform learns of the loss when the gateway
  notices it: at 60x a wall second of the gateway's (a busy machine's scheduling) is a
  simulated minute, and with the window at 60 s the platform took the press for networked
  in 4 of 9 runs at load 10-11 (online for the window's first 2.1 s in one of them).
- CL-MIL (line CL2): 30 s EXECUTING, 30 s IDLE. CL2 plans its own shift, t0 - 1 min ..
  t0 + 10 min local (the site plans all day), with planned maintenance 300-360 s: its
  planned time in the window is 180-300 and 360-600 s = 360 s, all seen (covered). It stands
  still in the maintenance and its program waits: EXECUTING 180-210, 240-270, 360-390,
  420-450, 480-510, 540-570 = 180 s, availability 180/360 = 0.5; its parts are good.

Key processes C10 (CL-CUT), C20 (CL-BOR), C30 (CL-OLD), C40 (CL-MIL): declared 3/4 (CL-OLD
is not), covered 2/4 (C10, C40), verified 2/4 and time-weighted 2/4 (both AUTO only), MDI 0,
networking 3/4 (CL-OLD never online in the window).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from plantwire_sim.truth import FaultRecord, PartRecord, read_truth_file
from tests.golden.conftest import Report, compare, run_plant

pytestmark = [pytest.mark.e2e, pytest.mark.backends("postgres")]

WINDOW_S = (180.0, 780.0)
ZONE = ZoneInfo("Asia/Shanghai")
SCENARIO = """
name = "plant-calendar"
description = "A fault at a local time, a line's own shifts and maintenance, parts a cycle."
seed = 5

[programs]
cutting = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 20 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 10 }},
]
boring = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 200 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 500 }},
]
milling = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 30 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 30 }},
]

[[faults]]
machine = "CL-BOR"
kind = "restart"
at = "{restart}"
seconds = 120

[[faults]]
machine = "CL-OLD"
kind = "restart"
at_s = 0
seconds = 86400

[[enterprises]]
code = "CAL"
uscc = "91330200MA2CALPL6N"
name = "Calendar Precision Co., Ltd."

[[enterprises.sites]]
code = "CAL1"
name = "Calendar plant"
timezone = "Asia/Shanghai"
edge_node = "CAL1-GW1"

[[enterprises.sites.lines]]
code = "CL1"
name = "All-day line"
processes = [
  {{ code = "C10", name = "Cutting", is_key = true, key_reason = "fit", equipment = ["CL-CUT"] }},
  {{ code = "C20", name = "Boring", is_key = true, key_reason = "bore", equipment = ["CL-BOR"] }},
  {{ code = "C30", name = "Pressing", is_key = true, key_reason = "seat", equipment = ["CL-OLD"] }},
]

[[enterprises.sites.lines]]
code = "CL2"
name = "One-shift line"
shifts = "{shift}"
maintenance = [{{ start = {maintenance_start}, end = {maintenance_end}, reason = "spindle" }}]
processes = [
  {{ code = "C40", name = "Milling", is_key = true, key_reason = "face", equipment = ["CL-MIL"] }},
]

[[enterprises.sites.equipment]]
code = "CL-CUT"
name = "Cutting cell, 4 parts a cycle"
line = "CL1"
control_type = "CNC"
declared_nc = true
ideal_cycle_s = 4
program = "cutting"
behaviour = {{ phase_s = 0, parts_per_cycle = 4, scrap_per_cycle = 1 }}

[[enterprises.sites.equipment]]
code = "CL-BOR"
name = "Boring mill (a restart at a local time)"
line = "CL1"
control_type = "CNC"
declared_nc = true
program = "boring"
behaviour = {{ phase_s = 0 }}

[[enterprises.sites.equipment]]
code = "CL-OLD"
name = "Old press (never connects)"
line = "CL1"
control_type = "PLC"
declared_nc = false
protocol = "modbus"
program = "cutting"
behaviour = {{ phase_s = 0 }}

[[enterprises.sites.equipment]]
code = "CL-MIL"
name = "Milling centre on its line's shift"
line = "CL2"
control_type = "CNC"
declared_nc = true
program = "milling"
behaviour = {{ phase_s = 0 }}
"""

HAND = {
    "nc_rate_declared": 3 / 4,
    "nc_rate_verified": 2 / 4,
    "nc_rate_time_weighted": 2 / 4,
    "coverage": 2 / 4,
    "mdi_share": 0.0,
    "networking_rate": 3 / 4,
}
HAND_OEE = {  # availability, performance, quality
    "CL-CUT": (400 / 600, 0.8, 0.75),
    "CL-BOR": (100 / 600, None, 1.0),
    "CL-OLD": (0.0, None, None),
    "CL-MIL": (180 / 360, None, 1.0),
}


def write_scenario(path: Path, t0: datetime) -> None:
    def local(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    path.write_text(
        SCENARIO.format(
            restart=local(300).strftime("%H:%M"),
            shift=f"{local(-60):%H:%M}-{local(600):%H:%M}",
            maintenance_start=local(300).isoformat(),
            maintenance_end=local(360).isoformat(),
        ),
        encoding="utf-8",
    )


def _explain(report: Report, failures: list[str]) -> str:
    timing = ", ".join(f"{k} {v} s" for k, v in report.wall_s.items())
    return f"{len(failures)} figures off ({timing}):\n" + "\n".join(failures)


async def test_a_plant_calendar_at_60x(
    database_url: str, mqtt_url: str, tmp_path: Path, unique: str
) -> None:
    t0 = datetime.fromtimestamp((time.time() - 3600) // 60 * 60, ZONE)
    start_ms = round(t0.timestamp() * 1000)
    path = tmp_path / "plant-calendar.toml"
    write_scenario(path, t0)
    scenario, report = await run_plant(
        str(path), database_url, mqtt_url, tmp_path, speed=60, seconds=WINDOW_S[1],
        start_ms=start_ms, host_id=f"g{unique}", window_s=WINDOW_S,
    )  # fmt: skip
    result, truth = compare(scenario, report)
    # the ground truth is the hand computation
    cal = truth["CAL"]
    for name, want in HAND.items():
        assert cal.value(name) == pytest.approx(want, abs=0.0005), name
    for code, (availability, performance, quality) in HAND_OEE.items():
        oee = cal.oee(code)
        assert (oee.availability, oee.performance, oee.quality) == pytest.approx(
            (availability, performance, quality), abs=0.0005
        ), code
    cut, old, mil = (cal.machines[c] for c in ("CL-CUT", "CL-OLD", "CL-MIL"))
    assert (cut.parts, cut.scrap) == (80, 20)
    assert (old.parts, old.online_ms) == (0, 0)
    assert (mil.planned_ms, mil.observed_ms) == (360_000, 360_000)
    assert report.truth_path is not None
    records = read_truth_file(report.truth_path)
    restarts = [r for r in records if isinstance(r, FaultRecord) and r.machine == "CL-BOR"]
    assert [(r.start_ms - start_ms, r.end_ms - start_ms) for r in restarts] == [(300_000, 420_000)]
    made = [r for r in records if isinstance(r, PartRecord) and r.machine == "CL-OLD"]
    assert made, "the old press made parts the platform never saw"
    # the platform agrees with the truth (and so with the hand computation)
    assert not result.failures, _explain(report, result.failures)
    assert not report.dead_letters
