"""Scenario files: validation with clear errors, conveniences, and the shipped scenarios."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from plantwire_bus.state import ControlType
from plantwire_sim.params import CncParams, LegacyParams, StationParams
from plantwire_sim.scenario import (
    SCENARIOS_DIR,
    Scenario,
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    parse_scenario,
)

BASE = """
name = "t"
{top}

[[enterprises]]
code = "E1"
uscc = "91320594MA1MXY3B2K"
name = "Test Co."
{enterprise}

[[enterprises.sites]]
code = "S1"
name = "Site"
edge_node = "GW1"
{site}

[[enterprises.sites.lines]]
code = "L1"
name = "Line"
processes = [
  {{ code = "OP10", name = "Turning", is_key = true, key_reason = "fit", equipment = ["M1"] }},
]

[[enterprises.sites.equipment]]
code = "M1"
name = "Machine 1"
line = "L1"
control_type = "CNC"
declared_nc = true
program = [{{ mode = "AUTO", execution = "EXECUTING", seconds = 5 }}]
{machine}
"""


def scenario(top: str = "", enterprise: str = "", site: str = "", machine: str = "") -> Scenario:
    return parse_scenario(
        BASE.format(top=top, enterprise=enterprise, site=site, machine=machine), "test.toml"
    )


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"enterprise": 'park = "NOPE"'}, "enterprise E1: unknown park 'NOPE'"),
        ({"top": '[[chains]]\ncode = "C"\nname = "c"\nleader = "X"'}, "unknown enterprise 'X'"),
        (
            {"machine": 'protocol = "modbus"\nprofile = "cnc"'},
            "profile cnc is simulated over opcua, not modbus",
        ),
        ({"machine": 'profile = "station"'}, "profile station is simulated over mqtt, not opcua"),
        ({"machine": 'protocol = "serial"'}, "protocol"),
        ({"machine": "params = { sensors = 999 }"}, "sensors"),
        ({"machine": "params = { unit_id = 3 }"}, "unit_id"),
        ({"machine": "behaviour = { scrap_rate = 1.5 }"}, "scrap_rate"),
        ({"machine": "behaviour = { micro_stop_every_s = 0 }"}, "micro_stop_every_s"),
        ({"site": 'timezone = "Mars/Olympus"'}, "site S1: unknown time zone 'Mars/Olympus'"),
        ({"site": 'shifts = "8-16"'}, "site S1: shifts: bad time span '8-16'"),
        ({"site": 'breaks = "12:00"'}, "site S1: breaks: bad time span '12:00'"),
        ({"site": "workdays = [7]"}, "workdays are 0 (Monday) .. 6 (Sunday)"),
        (
            {"top": '[[faults]]\nmachine = "M9"\nkind = "freeze"\nat_s = 1\nseconds = 1'},
            "fault freeze: unknown machine 'M9'",
        ),
        (
            {"top": '[[faults]]\nmachine = "M1"\nkind = "malformed"\nat_s = 1\nseconds = 1'},
            "fault malformed does not apply to M1 (opcua); it applies to mqtt",
        ),
        ({"top": '[[faults]]\nmachine = "M1"\nkind = "melt"\nat_s = 1\nseconds = 1'}, "kind"),
        ({"top": '[simulation]\nopcua_layout = "rack"'}, "opcua_layout"),
        ({"machine": "count = 0"}, "count must be a whole number 1..999"),
        (
            {"top": '[[faults]]\nmachine = "M1"\nkind = "restart"\nat = "25:00"\nseconds = 1'},
            "faults[0]: at '25:00': expected a local time of day 'HH:MM' (daily)",
        ),
        (
            {"top": '[[outages]]\nsite = "S1"\nat = "2026-02-30T09:00"\nseconds = 1'},
            "outages[0]: at '2026-02-30T09:00': expected a local date and time",
        ),
        (
            {"machine": "behaviour = { parts_per_cycle = 2, scrap_per_cycle = 3 }"},
            "behaviour: scrap_per_cycle (3) is more than parts_per_cycle (2)",
        ),
        (
            {"machine": "behaviour = { scrap_per_cycle = 1, scrap_rate = 0.1 }"},
            "give scrap_per_cycle (fixed counts) or scrap_rate, not both",
        ),
        ({"machine": "behaviour = { parts_per_cycle = 0 }"}, "parts_per_cycle"),
    ],
)
def test_invalid_scenarios_are_refused_with_the_field_named(
    parts: dict[str, str], message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario(**parts)
    assert str(info.value).startswith("test.toml: ")
    assert message in str(info.value)


def test_simulated_machine_codes_are_unique_across_enterprises() -> None:
    text = BASE.format(top="", enterprise="", site="", machine="")
    second = text[text.index("[[enterprises]]") :].replace('code = "E1"', 'code = "E2"')
    with pytest.raises(ScenarioError, match="machine M1: simulated machine codes must be unique"):
        parse_scenario(text + second)


@pytest.mark.parametrize(
    ("machine", "profile", "params"),
    [
        ("", "cnc", CncParams),
        ('protocol = "modbus"', "legacy", LegacyParams),
        ('protocol = "mqtt"', "station", StationParams),
        (
            'protocol = "opcua"\nprofile = "injection"\nparams = { job_name = "J-1" }',
            "injection",
            None,
        ),
    ],
)
def test_profile_defaults_from_the_protocol(
    machine: str, profile: str, params: type[Any] | None
) -> None:
    m = scenario(machine=machine).machines()[0][2]
    assert m.profile == profile
    assert m.params is not None and m.params.profile == profile
    if params is not None:
        assert m.params == params()


def test_count_expands_machines_and_process_references() -> None:
    s = scenario(machine="count = 12")
    codes = [m.code for _, _, m in s.machines()]
    assert codes == [f"M1-{i:02d}" for i in range(1, 13)]
    assert [m.name for _, _, m in s.machines()][:2] == ["Machine 1 #1", "Machine 1 #2"]
    process = s.enterprises[0].sites[0].lines[0].processes[0]
    assert process.equipment == tuple(codes)


def test_named_programs_are_resolved() -> None:
    top = '[programs]\ncycle = [{ mode = "AUTO", execution = "IDLE", seconds = 2 }]'
    s = parse_scenario(
        BASE.format(top=top, enterprise="", site="", machine="").replace(
            'program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 5 }]',
            'program = "cycle"',
        )
    )
    m = s.machines()[0][2]
    assert m.program == s.programs["cycle"]
    assert [(g.mode, g.execution, g.seconds) for g in m.program] == [("AUTO", "IDLE", 2.0)]


@pytest.mark.parametrize(
    "top", ["", '[programs]\nother = [{ mode = "AUTO", execution = "IDLE", seconds = 1 }]']
)
def test_unknown_program_names_are_refused(top: str) -> None:
    text = BASE.format(top=top, enterprise="", site="", machine="").replace(
        'program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 5 }]', 'program = "nope"'
    )
    with pytest.raises(ScenarioError, match="machine M1: unknown program 'nope'"):
        parse_scenario(text)


def test_parks_chains_and_faults_parse() -> None:
    top = (
        '[[parks]]\ncode = "P1"\nname = "Park"\nregion = "CN-JS"\n'
        '[[faults]]\nmachine = "M1"\nkind = "clock_jump"\nat_s = 10\nseconds = 5\n'
        "every_s = 60\n"
    )
    s = scenario(top=top, enterprise='park = "P1"')
    assert s.enterprises[0].park == "P1" and s.parks[0].region == "CN-JS"
    fault = s.faults[0]
    assert fault.next_occurrence(1000, 1000) == (11_000, 16_000)
    assert fault.next_occurrence(1000, 11_001) == (71_000, 76_000)


def test_every_builtin_scenario_loads() -> None:
    assert {"demo", "chain"} <= set(builtin_scenarios())
    for name in builtin_scenarios():
        assert load_scenario(name).name == name


def auto_share(s: Scenario, codes: tuple[str, ...]) -> float | None:
    machines = {m.code: m for _, _, m in s.machines()}
    segs = [g for c in codes for g in machines[c].program if g.execution == "EXECUTING"]
    executing = sum(g.seconds for g in segs)
    return sum(g.seconds for g in segs if g.mode == "AUTO") / executing if executing else None


def test_demo_has_every_kind_and_exactly_one_dishonest_machine() -> None:
    s = load_scenario("demo")
    machines = [m for _, _, m in s.machines()]
    assert 11 <= len(machines) <= 14
    assert set(Counter(m.protocol for m in machines)) == {"opcua", "modbus", "mqtt", "none"}
    assert {m.profile for m in machines} >= {"cnc", "injection", "legacy", "station", "energy"}
    dishonest = []
    for line in s.enterprises[0].sites[0].lines:
        for p in line.processes:
            used = [m for m in machines if m.code in p.equipment]
            share = auto_share(s, p.equipment)
            if p.is_key and all(m.declared_nc for m in used) and share is not None and share < 0.8:
                dishonest.append(p.equipment)
    assert dishonest == [("CNC-04",)]


def test_demo_header_states_the_hand_computed_rates() -> None:
    s = load_scenario("demo")
    machines = {m.code: m for _, _, m in s.machines()}
    key = declared = verified = 0
    for line in s.enterprises[0].sites[0].lines:
        for p in line.processes:
            if not p.is_key:
                continue
            key += 1
            used = [machines[c] for c in p.equipment]
            declared += all(m.declared_nc for m in used)
            share = auto_share(s, p.equipment)
            verified += all(m.protocol != "none" for m in used) and (share or 0) >= 0.8
    header = (SCENARIOS_DIR / "demo.toml").read_text(encoding="utf-8")
    assert f"= {declared}/{key} = {100 * declared / key:.1f} %" in header
    assert f"= {verified}/{key} = {100 * verified / key:.1f} %" in header
    assert verified < declared


def test_chain_has_a_leader_five_suppliers_two_parks_and_150_machines() -> None:
    s = load_scenario("chain")
    assert len(s.machines()) >= 150
    (chain,) = s.chains
    assert len(chain.members) >= 5
    assert len({e.park for e in s.enterprises}) == len(s.parks) == 2
    assert {m.tier for m in chain.members} == {1, 2}
    header = (SCENARIOS_DIR / "chain.toml").read_text(encoding="utf-8")
    machines = {m.code: m for _, _, m in s.machines()}
    for e in s.enterprises:
        processes = [
            p for site in e.sites for line in site.lines for p in line.processes if p.is_key
        ]
        declared = sum(all(machines[c].declared_nc for c in p.equipment) for p in processes)
        verified = sum(
            all(machines[c].protocol != "none" for c in p.equipment)
            and (auto_share(s, p.equipment) or 0) >= 0.8
            for p in processes
        )
        n = len(processes)
        assert re.search(
            rf"#   {e.code} +declared {declared}/{n}, verified {verified}/{n}\b", header
        ), e.code


def test_machines_keep_their_registry_fields() -> None:
    m = scenario(machine="ideal_cycle_s = 4.5").machines()[0][2]
    assert (m.control_type, m.declared_nc, m.ideal_cycle_s) == (ControlType.CNC, True, 4.5)


OUTAGE_BASE = """
name = "x"
[[enterprises]]
code = "E"
uscc = "91110000MA0000000X"
name = "E"
[[enterprises.sites]]
code = "S"
name = "Site"
edge_node = "GW"
[[enterprises.sites.lines]]
code = "L"
name = "Line"
[[enterprises.sites.equipment]]
code = "M"
name = "M"
line = "L"
control_type = "MANUAL"
declared_nc = false
protocol = "mqtt"
program = [{ mode = "MANUAL", execution = "EXECUTING", seconds = 60 }]
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[outages]]\nsite = "T"\nat_s = 1\nseconds = 1\n', "outage: unknown site 'T'"),
        (
            '[[registry_changes]]\nat_s = 1\nmachine = "N"\ndeclared_nc = true\n',
            "registry change: unknown machine 'N'",
        ),
        (
            '[[registry_changes]]\nat_s = 1\nmachine = "M"\ndeclared_nc = true\n',
            "a MANUAL machine (M) cannot be declared NC",
        ),
        (  # a registry change's start is spelt and checked as a fault's
            '[[registry_changes]]\nat_s = 1\nat = "08:00"\nmachine = "M"\ndeclared_nc = false\n',
            "give its start as either at_s (seconds after the start) or at",
        ),
        (
            '[[registry_changes]]\nat = "25:00"\nmachine = "M"\ndeclared_nc = false\n',
            "at '25:00': expected a local time of day 'HH:MM' (daily)",
        ),
        (
            '[[registry_changes]]\nat_s = 5\ndays = [0]\nmachine = "M"\ndeclared_nc = false\n',
            "days are for a daily time (at = 'HH:MM'), not at_s",
        ),
    ],
)
def test_outages_and_registry_changes_are_checked(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_scenario(OUTAGE_BASE + extra)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('shifts = "9-12"', "line L1: shifts: bad time span '9-12'"),
        ("workdays = [0, 9]", "line L1: workdays are 0 (Monday) .. 6 (Sunday)"),
        (
            "maintenance = [{ start = 2026-03-02T10:00:00Z, end = 2026-03-02T10:00:00Z }]",
            "maintenance from 2026-03-02T10:00:00+00:00: end is not after start",
        ),
        ('maintenance = [{ start = "10:00", end = "11:00" }]', "maintenance[0].start"),
    ],
)
def test_a_lines_calendar_is_checked(line: str, message: str) -> None:
    text = BASE.format(top="", enterprise="", site="", machine="")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text.replace('name = "Line"', f'name = "Line"\n{line}', 1), "test.toml")
    assert str(info.value).startswith("test.toml: enterprises[0].sites[0].lines[0]")
    assert message in str(info.value)
