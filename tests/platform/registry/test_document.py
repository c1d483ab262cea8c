"""The registry file format: validated whole, errors that name the field, and a simulator
scenario that is this format plus behaviour (never a different one)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from plantwire_platform.registry import document
from plantwire_platform.registry.document import RegistryError, parse_registry, registry_from
from plantwire_sim import scenario
from plantwire_sim.scenario import builtin_scenarios, load_scenario

ROOT = Path(__file__).resolve().parents[3]

MINIMAL = """
[[parks]]
code = "P1"
name = "Park one"

[[enterprises]]
code = "ACME"
uscc = "91320594MA1MXY3B2K"
name = "Acme"
park = "P1"

[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "GW1"
shifts = "08:00-16:00"

[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"
processes = [
  { code = "OP10", name = "Turning", is_key = true, key_reason = "fit", equipment = ["CNC-1"] },
]

[[enterprises.sites.equipment]]
code = "CNC-1"
name = "Lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
"""


def test_a_minimal_registry_parses() -> None:
    reg = parse_registry(MINIMAL)
    [(ent, site, eq)] = reg.equipment()
    assert (ent.code, site.edge_node, eq.code, eq.declared_nc) == ("ACME", "GW1", "CNC-1", True)
    (line,) = site.lines
    assert (line.shifts, line.workdays, line.maintenance) == (None, None, ())


def test_a_line_plans_on_its_own_calendar_with_maintenance() -> None:
    reg = parse_registry(
        MINIMAL.replace(
            'name = "Line 1"',
            'name = "Line 1"\nshifts = "22:00-06:00"\nworkdays = [0, 1]\nmaintenance = ['
            "{ start = 2026-03-02T23:00:00+08:00, end = 2026-03-03T01:00:00+08:00,"
            ' reason = "oil" }]',
        )
    )
    (line,) = reg.enterprises[0].sites[0].lines
    assert (line.shifts, line.workdays) == ("22:00-06:00", (0, 1))
    (window,) = line.maintenance
    assert (window.end - window.start).total_seconds() == 7200 and window.reason == "oil"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('CNC-1"]', 'CNC-9"]'), "process OP10: unknown equipment 'CNC-9'"),
        (('park = "P1"', 'park = "P9"'), "enterprise ACME: unknown park 'P9'"),
        (('shifts = "08:00-16:00"', 'shifts = "8-16"'), "site S1: shifts: bad shift '8-16'"),
        (('control_type = "CNC"', 'control_type = "MANUAL"'), "MANUAL equipment cannot be"),
        (('line = "L1"\ncontrol', 'line = "L7"\ncontrol'), "equipment CNC-1: unknown line 'L7'"),
        (("declared_nc = true", 'declared_nc = true\nprogram = "x"'), "equipment[0].program"),
        (('uscc = "91320594MA1MXY3B2K"', 'uscc = "123"'), "enterprises[0].uscc"),
        (
            ('key_reason = "fit"', 'key_reason = " "'),
            "processes[0].key_reason: key process OP10 names why it is key",
        ),
        (('key_reason = "fit", ', ""), "key process OP10 names why it is key"),
        (('name = "Line 1"', 'name = "Line 1"\nshifts = "6-14"'), "line L1: shifts: bad shift"),
        (('name = "Line 1"', 'name = "Line 1"\nworkdays = [8]'), "line L1: workdays are 0"),
        (
            (
                'name = "Line 1"',
                'name = "Line 1"\nmaintenance = [{ start = 2026-03-02T10:00:00+08:00,'
                " end = 2026-03-02T09:00:00+08:00 }]",
            ),
            "lines[0].maintenance[0]: maintenance from 2026-03-02T10:00:00+08:00: end is not "
            "after start",
        ),
        (
            ('name = "Line 1"', 'name = "Line 1"\nmaintenance = [{ start = 2026-03-02T10:00:00 }]'),
            "lines[0].maintenance[0].start",
        ),
    ],
)
def test_errors_name_the_entry_or_field(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in MINIMAL
    with pytest.raises(RegistryError, match=r"registry\.toml: ") as caught:
        parse_registry(MINIMAL.replace(old, new, 1), "registry.toml")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("registry_model", "scenario_model"),
    [
        (document.Registry, scenario.Scenario),
        (document.Park, scenario.Park),
        (document.Chain, scenario.Chain),
        (document.ChainMember, scenario.ChainMember),
        (document.Enterprise, scenario.Enterprise),
        (document.Site, scenario.Site),
        (document.Line, scenario.Line),
        (document.Process, scenario.Process),
        (document.Equipment, scenario.Machine),
    ],
)
def test_a_scenario_extends_the_registry_format(
    registry_model: type[BaseModel], scenario_model: type[BaseModel]
) -> None:
    """Every key of the registry format is a key of the scenario format, with the same
    default (or required there); the scenario only adds keys."""
    ours, theirs = registry_model.model_fields, scenario_model.model_fields
    by_key = {(f.alias or n): f for n, f in theirs.items()}
    for name, field in ours.items():
        assert name in by_key, f"{scenario_model.__name__} lacks {name}"
        assert by_key[name].is_required() or by_key[name].default == field.default, name


@pytest.mark.parametrize("name", builtin_scenarios())
def test_every_builtin_scenario_yields_a_valid_registry(name: str) -> None:
    s = load_scenario(name)
    reg = registry_from(s.registry())
    assert [e.code for _, _, e in reg.equipment()] == [m.code for _, _, m in s.machines()]
    assert [(e.declared_nc, e.control_type) for _, _, e in reg.equipment()] == [
        (m.declared_nc, m.control_type) for _, _, m in s.machines()
    ]


def test_sim_registry_writes_a_file_the_platform_reads(tmp_path: Path) -> None:
    out = tmp_path / "registry.toml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantwire.cli",
            "sim",
            "registry",
            "--scenario",
            "chain",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    reg = parse_registry(out.read_text(), str(out))
    assert len(reg.equipment()) == len(load_scenario("chain").machines())
    assert "program" not in out.read_text() and "behaviour" not in out.read_text()
    assert tomllib.loads(out.read_text())["chains"][0]["leader"]
