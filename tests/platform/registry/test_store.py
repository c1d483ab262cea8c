"""Registry import against a real PostgreSQL: idempotent, referential, versioned."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from plantwire_platform.connections import connect
from plantwire_platform.registry.document import Registry, registry_from
from plantwire_platform.registry.export import enterprise_document
from plantwire_platform.registry.store import import_registry
from plantwire_sim.scenario import load_scenario, parse_scenario

CHAIN = """
name = "small-chain"
[[parks]]
code = "P1"
name = "North park"
region = "CN-JS"
[[chains]]
code = "GEAR"
name = "Gearbox chain"
leader = "LEAD"
members = [{ enterprise = "SUP", tier = 1 }]
[[enterprises]]
code = "LEAD"
uscc = "91110000MA0000001X"
name = "Leader"
park = "P1"
[[enterprises]]
code = "SUP"
uscc = "91110000MA0000002X"
name = "Supplier"
[[enterprises.sites]]
code = "S1"
name = "Site"
edge_node = "GW"
shifts = "06:00-14:00,14:00-22:00"
workdays = [0, 1, 2, 3, 4]
[[enterprises.sites.lines]]
code = "L1"
name = "Line"
processes = [
  { code = "OP10", name = "Turning", is_key = true, key_reason = "tolerance", equipment = ["M1"] },
]
[[enterprises.sites.equipment]]
code = "M1"
name = "Lathe"
line = "L1"
control_type = "CNC"
declared_nc = {declared}
protocol = "none"
ideal_cycle_s = 42
"""


async def rows(conn: psycopg.AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query.encode())
    return await cur.fetchall()


async def test_import_is_idempotent_and_links_chains_and_parks(database_url: str) -> None:
    scenario = parse_scenario(CHAIN.replace("{declared}", "true"))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        first = await import_registry(conn, registry_from(scenario.registry()))
        again = await import_registry(conn, registry_from(scenario.registry()))
        assert first == again
        assert await rows(
            conn,
            "SELECT c.code, l.code, e.code, m.tier FROM chain c"
            " JOIN enterprise l ON l.id = c.leader_id"
            " JOIN chain_member m ON m.chain_id = c.id"
            " JOIN enterprise e ON e.id = m.enterprise_id",
        ) == [("GEAR", "LEAD", "SUP", 1)]
        assert await rows(
            conn, "SELECT e.code, p.code FROM enterprise e JOIN park p ON p.id = e.park_id"
        ) == [("LEAD", "P1")]
        assert await rows(conn, "SELECT shifts, workdays FROM site") == [
            ("06:00-14:00,14:00-22:00", [0, 1, 2, 3, 4])
        ]
        assert await rows(conn, "SELECT ideal_cycle_s FROM equipment") == [(42.0,)]
        assert await rows(conn, "SELECT count(*) FROM equipment_history") == [(1,)]
        assert await rows(conn, "SELECT count(*) FROM process_history") == [(1,)]


async def test_a_change_is_versioned_at_its_effective_time(database_url: str) -> None:
    change = datetime(2026, 6, 1, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(
            conn, registry_from(parse_scenario(CHAIN.replace("{declared}", "false")).registry())
        )
        await import_registry(
            conn,
            registry_from(parse_scenario(CHAIN.replace("{declared}", "true")).registry()),
            change,
        )
        history = await rows(
            conn,
            "SELECT valid_from, valid_to, declared_nc FROM equipment_history ORDER BY valid_from",
        )
    always = datetime(1970, 1, 1, tzinfo=UTC)
    assert history == [(always, change, False), (change, None, True)]


async def test_builtin_scenarios_import(database_url: str) -> None:
    from plantwire_sim.scenario import builtin_scenarios

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for name in builtin_scenarios():
            scenario = load_scenario(name)
            ids = await import_registry(conn, registry_from(scenario.registry()))
            assert sorted(ids) == sorted(e.code for e in scenario.enterprises)
        keys = await rows(conn, "SELECT count(*) FROM process_history WHERE is_key")
    expected = sum(
        p.is_key
        for name in builtin_scenarios()
        for e in load_scenario(name).enterprises
        for s in e.sites
        for line in s.lines
        for p in line.processes
    )
    assert keys == [(expected,)]


async def test_a_lines_calendar_and_maintenance_import_export_and_change(
    database_url: str,
) -> None:
    """A line's own shifts, workdays and maintenance windows are stored, exported as they
    were given, imported again without change, and replaced by the next document's."""
    line = 'name = "Line"\nshifts = "08:00-16:00"\nworkdays = [0, 1, 2]\nmaintenance = [{}]'
    window = "{ start = 2026-03-02T10:00:00+08:00, end = 2026-03-02T12:00:00+08:00 }"
    other = '{ start = 2026-03-04T10:00:00+08:00, end = 2026-03-04T11:00:00+08:00, reason = "x" }'

    def doc(windows: str) -> Registry:
        text = CHAIN.replace("{declared}", "true")
        text = text.replace('name = "Line"', line.format(windows), 1)
        return registry_from(parse_scenario(text).registry())

    async with await connect(database_url) as conn:  # in UTC as the platform's, whatever PGTZ
        ids = await import_registry(conn, doc(window))
        await import_registry(conn, doc(window))
        assert await rows(conn, "SELECT shifts, workdays FROM line") == [("08:00-16:00", [0, 1, 2])]
        first = await rows(conn, "SELECT id, starts_at, ends_at, reason FROM line_maintenance")
        assert [(r[1].isoformat(), r[2].isoformat(), r[3]) for r in first] == [
            ("2026-03-02T02:00:00+00:00", "2026-03-02T04:00:00+00:00", "")
        ]
        exported = await enterprise_document(conn, ids["SUP"])
        assert exported is not None
        (mine,) = exported.sites[0].lines
        assert (mine.shifts, mine.workdays, len(mine.maintenance)) == ("08:00-16:00", (0, 1, 2), 1)
        assert mine.maintenance[0].start == datetime(2026, 3, 2, 2, tzinfo=UTC)
        await import_registry(conn, doc(f"{window}, {other}"))
        again = await rows(conn, "SELECT id, reason FROM line_maintenance ORDER BY starts_at")
        assert again == [(first[0][0], ""), (again[1][0], "x")]  # the kept window kept its row
        await import_registry(conn, doc(other))
        assert await rows(conn, "SELECT reason FROM line_maintenance") == [("x",)]
