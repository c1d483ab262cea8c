"""The indicators expected from ground truth alone, on hand-made records with hand-computed
values: planned time from the shift calendar, interface-down faults, coverage, the three NC
rates, the MDI share, networking, OEE per machine and line, roll-ups."""

from __future__ import annotations

import pytest

from plantwire_bus.state import Execution, Mode
from plantwire_sim.expected import Thresholds, expected, planned_spans, roll_up
from plantwire_sim.scenario import parse_scenario
from plantwire_sim.truth import (
    FaultRecord,
    OutageRecord,
    PartRecord,
    Record,
    RegistryRecord,
    StateRecord,
)

H = 3_600_000
DAY = 1_767_225_600_000  # 2026-01-01T00:00Z, a Thursday
SCENARIO = """
name = "hand"
[[enterprises]]
code = "E"
uscc = "91110000MA0000000X"
name = "Hand-computed Works"
[[enterprises.sites]]
code = "S"
name = "Site"
edge_node = "GW"
timezone = "UTC"
shifts = "08:00-12:00"
breaks = "10:00-10:30"
[[enterprises.sites.lines]]
code = "L"
name = "Line"
processes = [
  { code = "P1", name = "Turning", is_key = true, key_reason = "fit", equipment = ["CNC"] },
  { code = "P2", name = "Assembly", is_key = true, key_reason = "fit", equipment = ["STN"] },
  { code = "P3", name = "Inspection", is_key = true, key_reason = "fit", equipment = ["BENCH"] },
  { code = "P4", name = "Washing", is_key = false, equipment = ["METER"] },
]
[[enterprises.sites.equipment]]
code = "CNC"
name = "CNC"
line = "L"
control_type = "CNC"
declared_nc = true
ideal_cycle_s = 60
program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 60 }]
[[enterprises.sites.equipment]]
code = "STN"
name = "Station"
line = "L"
control_type = "MANUAL"
declared_nc = false
protocol = "mqtt"
program = [{ mode = "MANUAL", execution = "EXECUTING", seconds = 60 }]
[[enterprises.sites.equipment]]
code = "METER"
name = "Energy box"
line = "L"
control_type = "PLC"
declared_nc = true
protocol = "mqtt"
profile = "energy"
program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 60 }]
[[enterprises.sites.equipment]]
code = "BENCH"
name = "Bench"
line = "L"
control_type = "MANUAL"
declared_nc = false
protocol = "none"
"""


def state(machine: str, hours: float, mode: Mode, execution: Execution) -> StateRecord:
    return StateRecord(machine, DAY + round(hours * H), mode, execution)


RECORDS: list[Record] = [
    # CNC, window 09:00-13:00 (planned 09:00-12:00, 3 h): AUTO executing 09:00-10:00,
    # MDI executing 10:00-10:30, idle 10:30-11:00, MANUAL executing 11:00-11:30, then off;
    # its interface is down 11:15-11:45 (a restart)
    state("CNC", 8, Mode.AUTO, Execution.EXECUTING),
    state("CNC", 10, Mode.MDI, Execution.EXECUTING),
    state("CNC", 10.5, Mode.AUTO, Execution.IDLE),
    state("CNC", 11, Mode.MANUAL, Execution.EXECUTING),
    state("CNC", 11.5, Mode.UNKNOWN, Execution.OFF),
    FaultRecord("CNC", "restart", DAY + round(11.25 * H), DAY + round(11.75 * H)),
    # the station executes by hand all along; the energy box runs in AUTO
    state("STN", 8, Mode.MANUAL, Execution.EXECUTING),
    state("METER", 8, Mode.AUTO, Execution.EXECUTING),
    # parts: 50 by the CNC (2 scrap), 3 by the station (1 scrap), 9 "by" the energy box (which
    # counts none), one CNC part before the window
    *(PartRecord("CNC", DAY + 9 * H + i * 60_000, scrap=i < 2) for i in range(50)),
    PartRecord("CNC", DAY + 8 * H),
    *(PartRecord("STN", DAY + 9 * H + i, scrap=i == 0) for i in range(3)),
    *(PartRecord("METER", DAY + 9 * H + i) for i in range(9)),
]


def test_planned_time_is_the_shifts_breaks_included() -> None:
    site = parse_scenario(SCENARIO).enterprises[0].sites[0]
    assert planned_spans(site, DAY + 9 * H, DAY + 13 * H) == [(DAY + 9 * H, DAY + 12 * H)]
    assert planned_spans(site, DAY, DAY + 24 * H) == [(DAY + 8 * H, DAY + 12 * H)]


def test_hand_computed_indicators() -> None:
    scenario = parse_scenario(SCENARIO)
    (e,) = expected(scenario, RECORDS, DAY + 9 * H, DAY + 13 * H).values()
    cnc, stn, meter, bench = (e.machines[c] for c in ("CNC", "STN", "METER", "BENCH"))
    # CNC: seen 09:00-11:15 and 11:45-12:00 of the planned 09:00-12:00 (a restart hides
    # 11:15-11:45), and online until 13:00 too
    assert (cnc.planned_ms, cnc.observed_ms, cnc.online_ms) == (3 * H, 2.5 * H, 3.5 * H)
    assert (cnc.executing_ms, cnc.auto_ms, cnc.mdi_ms) == (1.75 * H, 1 * H, 0.5 * H)
    assert cnc.coverage == pytest.approx(5 / 6) and stn.coverage == meter.coverage == 1.0
    assert bench.online_ms == bench.observed_ms == 0 and bench.coverage == 0
    assert (stn.executing_ms, stn.auto_ms) == (3 * H, 0)
    # P1 not covered (83 % < 90 %), P2 covered but manual, P3 without telemetry
    assert [(p.code, p.declared_nc, p.covered, p.verified_nc) for p in e.processes] == [
        ("P1", True, False, False),
        ("P2", False, True, False),
        ("P3", False, False, False),
    ]
    assert e.rate("nc_rate_declared") == (1, 3)
    assert e.rate("nc_rate_verified") == (0, 3)
    assert e.rate("coverage") == (1, 3)
    assert e.rate("nc_rate_time_weighted") == (0.0, 3)  # the covered P2: AUTO 0 %
    assert e.rate("mdi_share") == (0, 3 * 3600)  # covered key processes only: P2
    assert e.rate("networking_rate") == (3, 4)
    # OEE: the CNC ran 1.75 h of 3 planned, 50 parts x 60 s ideal = 50 min of 105 run
    oee = e.oee("CNC")
    assert oee.availability == pytest.approx(1.75 / 3)
    assert oee.performance == pytest.approx(50 / 105)
    assert oee.quality == pytest.approx(48 / 50)
    assert oee.oee == pytest.approx(1.75 / 3 * 50 / 105 * 48 / 50)
    assert e.oee("STN").quality == pytest.approx(2 / 3) and e.oee("STN").performance is None
    assert e.oee("METER").quality is None and e.oee("METER").availability == 1.0
    assert e.oee("BENCH").availability == 0.0 and e.oee("BENCH").oee is None
    # the line pools times and counts; performance from the machines with an ideal cycle
    line = e.line_oee()[("S", "L")]
    assert line.availability == pytest.approx((1.75 + 3 + 3 + 0) / 12)
    assert line.performance == pytest.approx(50 / 105)
    assert line.quality == pytest.approx((48 + 2) / (50 + 3))


def test_thresholds_move_the_verdicts() -> None:
    scenario = parse_scenario(SCENARIO)
    loose = expected(scenario, RECORDS, DAY + 9 * H, DAY + 13 * H, Thresholds(0.8, 0.5))
    p1 = loose["E"].processes[0]
    assert p1.covered and p1.auto_share == pytest.approx(1 / 1.75) and p1.verified_nc
    assert loose["E"].rate("mdi_share") == (0.5 * 3600, 4.75 * 3600)


def test_roll_up_is_the_mean_beside_the_pooled_ratio() -> None:
    assert roll_up([(1, 2), (3, 4), (0, 0)]) == (0.625, 4 / 6, 2)
    assert roll_up([(0, 0)]) == (None, None, 0)


def test_a_silent_mqtt_device_is_unseen_while_silent() -> None:
    """The station says nothing 09:30-10:00 (the ``silent`` fault): it was not observed then,
    so its coverage is 2.5 of its 3 planned hours, below the 90 % a key process needs."""
    scenario = parse_scenario(SCENARIO)
    silent = FaultRecord("STN", "silent", DAY + round(9.5 * H), DAY + 10 * H)
    (e,) = expected(scenario, [*RECORDS, silent], DAY + 9 * H, DAY + 13 * H).values()
    stn = e.machines["STN"]
    assert (stn.observed_ms, stn.online_ms) == (2.5 * H, 3.5 * H)
    assert stn.coverage == pytest.approx(2.5 / 3)
    assert e.rate("coverage") == (0, 3)  # P2 (the station) is no longer covered


def test_a_redeclaration_cuts_the_window_and_averages_the_counts_by_duration() -> None:
    """The CNC (P1) is re-declared not NC at 10:00 of the
    window 09:00-13:00: a quarter of it with P1 declared, three quarters without, so the
    declared count is 0.25 x 1 + 0.75 x 0 = 0.25 of 3 key processes. Each part has its own
    coverage: 09:00-10:00 the CNC is seen all its planned hour (covered, AUTO 100 % of
    EXECUTING: verified), 10:00-13:00 1.5 of its 2 planned hours (not covered). An uplink
    outage of the site blinds nothing."""
    scenario = parse_scenario(SCENARIO)
    records = [
        *RECORDS,
        RegistryRecord("CNC", DAY + 10 * H, False),
        OutageRecord("S", "uplink", DAY + 9 * H, DAY + 12 * H),
    ]
    e = expected(scenario, records, DAY + 9 * H, DAY + 13 * H)["E"]
    assert [w for w, _ in e.segments] == [0.25, 0.75]
    assert e.rate("nc_rate_declared") == (0.25, 3)
    assert e.rate("nc_rate_verified") == (0.25, 3)  # P1 verified in the first quarter only
    assert e.rate("coverage") == (0.25 * 2 + 0.75 * 1, 3)  # P2 covered in both parts
    assert e.rate("nc_rate_time_weighted") == (0.25 * 1.0, 3)
    # MDI over the covered parts' EXECUTING time: the first part's P1 (1 h AUTO) and P2
    # (1 h), the second part's P2 (2 h of its planned 10:00-12:00)
    assert e.rate("mdi_share") == (0, 4 * 3600)
    # the whole window's machines are as without the change (and the outage)
    assert e.machines == expected(scenario, RECORDS, DAY + 9 * H, DAY + 13 * H)["E"].machines
    # a change outside the window changes nothing but the registry in force
    later = expected(scenario, [*RECORDS, RegistryRecord("CNC", DAY + 14 * H, False)],
                     DAY + 9 * H, DAY + 13 * H)["E"]  # fmt: skip
    assert later.rate("nc_rate_declared") == (1, 3) and len(later.segments) == 1


def test_parts_are_counted_as_the_counters_show_them() -> None:
    """The CNC makes a part every minute from 09:00 (2 scrap among the first two).

    - Down 08:30-09:20 (offline at the window's start 09:00): its first reading, at 09:20,
      is the baseline, so only the parts after it count: 09:21 .. 09:49, 29 good.
    - Down 08:30-14:00 (it never connects in the window): no parts at all, though the truth
      says it made 50, and it is not networked.
    - Down 09:20-09:40 only (online at the start): every part of the window counts, the
      counter kept counting while unseen: 48 good + 2 scrap."""
    scenario = parse_scenario(SCENARIO)
    window = (DAY + 9 * H, DAY + 13 * H)

    def cnc(down: tuple[float, float]) -> tuple[int, int, int]:
        fault = FaultRecord("CNC", "drop", DAY + round(down[0] * H), DAY + round(down[1] * H))
        machines = expected(scenario, [*RECORDS, fault], *window)["E"].machines
        m = machines["CNC"]
        return m.parts, m.scrap, m.online_ms

    unseen = (20 + 30) * 60_000  # and the restart 11:15-11:45 of RECORDS
    assert cnc((8.5, 9 + 20 / 60)) == (29, 0, 4 * H - unseen)
    assert cnc((8.5, 14)) == (0, 0, 0)
    assert cnc((9 + 20 / 60, 9 + 40 / 60)) == (50, 2, 4 * H - unseen)
    never = expected(scenario, [*RECORDS, FaultRecord("CNC", "drop", DAY, DAY + 24 * H)], *window)[
        "E"
    ]
    assert never.rate("networking_rate") == (2, 4)  # STN and METER; BENCH has no telemetry
    assert never.oee("CNC").quality is None and never.machines["CNC"].parts == 0


def test_several_parts_a_cycle_with_fixed_scrap() -> None:
    """Records of 4 parts a cycle (3 good, 1 scrap) every 2 minutes 09:00-09:58 (30 cycles):
    120 parts, 30 scrap; with the 60 s ideal cycle (a part's) over the CNC's EXECUTING time."""
    scenario = parse_scenario(SCENARIO)
    cycles = [DAY + 9 * H + i * 120_000 for i in range(30)]
    records: list[Record] = [
        r for r in RECORDS if not (isinstance(r, PartRecord) and r.machine == "CNC")
    ]
    records += [PartRecord("CNC", t, False, 3) for t in cycles]
    records += [PartRecord("CNC", t, True, 1) for t in cycles]
    e = expected(scenario, records, DAY + 9 * H, DAY + 13 * H)["E"]
    cnc = e.machines["CNC"]
    assert (cnc.parts, cnc.scrap) == (120, 30)
    oee = e.oee("CNC")
    assert oee.quality == pytest.approx(90 / 120)
    # EXECUTING observed and planned: 1.75 h (see test_hand_computed_indicators)
    assert oee.performance == pytest.approx(min(60 * 120 / (1.75 * 3600), 1.0))


def test_a_lines_own_calendar_and_planned_maintenance_are_not_planned_time() -> None:
    """Line L plans 09:00-12:00 on its own (the site 08:00-12:00) and has planned
    maintenance 10:00-10:30: the CNC's planned time in the window 09:00-13:00 is 2.5 h
    (09:00-10:00, 10:30-12:00). It is seen all of it but the restart's 11:15-11:45: 2 h,
    coverage 0.8; EXECUTING (observed, planned) 09:00-10:00 AUTO and 11:00-11:15 MANUAL
    = 1.25 h (its MDI 10:00-10:30 falls in the maintenance), availability 0.5."""
    day = "2026-01-01T"
    line = (
        'name = "Line"\nshifts = "09:00-12:00"\nmaintenance = [{ start = '
        f"{day}10:00:00Z, end = {day}10:30:00Z }}]"
    )
    scenario = parse_scenario(SCENARIO.replace('name = "Line"', line, 1))
    site = scenario.enterprises[0].sites[0]
    assert planned_spans(site, DAY + 9 * H, DAY + 13 * H, "L") == [
        (DAY + 9 * H, DAY + 10 * H),
        (DAY + round(10.5 * H), DAY + 12 * H),
    ]
    assert planned_spans(site, DAY + 9 * H, DAY + 13 * H) == [(DAY + 9 * H, DAY + 12 * H)]
    e = expected(scenario, RECORDS, DAY + 9 * H, DAY + 13 * H)["E"]
    cnc = e.machines["CNC"]
    assert (cnc.planned_ms, cnc.observed_ms) == (2.5 * H, 2 * H)
    assert (cnc.executing_ms, cnc.auto_ms, cnc.mdi_ms) == (1.25 * H, 1 * H, 0)
    assert cnc.coverage == pytest.approx(0.8)
    assert e.oee("CNC").availability == pytest.approx(0.5)


SECOND_SITE = """
[[enterprises.sites]]
code = "T"
name = "Second site"
edge_node = "GW2"
timezone = "UTC"
shifts = "08:00-12:00"
[[enterprises.sites.lines]]
code = "L"
name = "Line"
processes = [
  { code = "P1", name = "Turning", is_key = true, key_reason = "fit", equipment = ["CNC2"] },
]
[[enterprises.sites.equipment]]
code = "CNC2"
name = "CNC"
line = "L"
control_type = "CNC"
declared_nc = true
ideal_cycle_s = 30
program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 60 }]
"""


def test_lines_of_one_code_at_two_sites_are_two_lines() -> None:
    """Site T also has a line L (line codes are unique only within a site): its CNC2 runs
    in AUTO all the planned 09:00-12:00 and makes 60 parts of 30 s, so T's L is A = 1,
    P = 1,800 / 10,800 s, Q = 1, and S's L is as in the test above, not pooled with it."""
    scenario = parse_scenario(SCENARIO + SECOND_SITE)
    records = [
        *RECORDS,
        state("CNC2", 8, Mode.AUTO, Execution.EXECUTING),
        *(PartRecord("CNC2", DAY + 9 * H + i * 60_000) for i in range(60)),
    ]
    (e,) = expected(scenario, records, DAY + 9 * H, DAY + 13 * H).values()
    lines = e.line_oee()
    assert set(lines) == {("S", "L"), ("T", "L")}
    assert lines[("T", "L")].availability == 1.0
    assert lines[("T", "L")].performance == pytest.approx(1800 / 10800)
    assert lines[("T", "L")].quality == 1.0
    assert lines[("S", "L")].availability == pytest.approx((1.75 + 3 + 3 + 0) / 12)
    assert lines[("S", "L")].performance == pytest.approx(50 / 105)
    assert lines[("S", "L")].quality == pytest.approx((48 + 2) / (50 + 3))
