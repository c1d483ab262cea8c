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


ANOTHER_SITE = '[[enterprises.sites]]\ncode = "S2"\nname = "Site 2"\nedge_node = "GW1"\n'
ANOTHER_MACHINE = (
    '[[enterprises.sites.equipment]]\ncode = "CNC-1"\nname = "Mill"\nline = "L1"\n'
    'control_type = "CNC"\ndeclared_nc = false\n'
)
CHAIN = '[[chains]]\ncode = "C1"\nname = "Chain"\nleader = "ACME"\n'
ANOTHER = '[[enterprises]]\ncode = "ACME"\nuscc = "91320594MA1MXY3B3L"\nname = "Acme 2"\n'


@pytest.mark.parametrize(
    ("added", "message"),
    [
        (
            ANOTHER_SITE,
            "enterprises[0].sites[1].edge_node: edge node 'GW1' is also that of sites[0] "
            "(site S1): one gateway reads one site",
        ),
        (
            ANOTHER_SITE.replace("S2", "S1").replace("GW1", "GW2"),
            "enterprises[0].sites[1].code: site code 'S1' is also that of sites[0] "
            "(enterprise ACME)",
        ),
        (
            ANOTHER_MACHINE,
            "enterprises[0].sites[0].equipment[1].code: equipment code 'CNC-1' is also that of "
            "equipment[0] (site S1)",
        ),
        ('[[parks]]\ncode = "P1"\nname = "P"\n', "parks[1].code: park code 'P1' is also "
         "that of parks[0]"),
        (CHAIN + CHAIN, "chains[1].code: chain code 'C1' is also that of chains[0]"),
        (ANOTHER, "enterprises[1].code: enterprise code 'ACME' is also that of enterprises[0]"),
        (
            ANOTHER.replace('"ACME"', '"BOLT"').replace("3B3L", "3B2K"),
            "enterprises[1].uscc: unified social credit code '91320594MA1MXY3B2K' is also that "
            "of enterprises[0]",
        ),
    ],
)  # fmt: skip
def test_a_code_given_twice_names_both_places(added: str, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_registry(MINIMAL + added, "registry.toml")
    assert str(caught.value) == f"registry.toml: {message}"
    # the scenario format reads the same document the same way
    with pytest.raises(RegistryError) as caught:
        registry_from(tomllib.loads(MINIMAL + added), "scenario")
    assert str(caught.value) == f"scenario: {message}"


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
