"""No answer depends on the database server's time zone.

The same database is asked the same questions twice: once as a server in UTC would answer them,
once with its ``TimeZone`` set to Asia/Kolkata (+05:30, half an hour off any whole hour) for the
database and ``PGTZ=Asia/Kolkata`` in the environment of the API (its worker processes too) and
of the command line. Every answer that involves a time must come out byte for byte the same:
an indicator explanation cut at a registry change, indicators in local days of a site in
Ningbo (its shifts and a line's maintenance window), the registry export (HTTP, TOML, CSV),
a machine's history, and a partner's telemetry and indicator pages within time bounds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_sim.scenario import parse_scenario
from tests.platform.commands import platform_command
from tests.platform.identities import in_process, person
from tests.platform.partner.conftest import T0, World, grant, seed, settings, tokens
from tests.platform.test_connections import far_zone

NINGBO = """
name = "ningbo"
[[enterprises]]
code = "NB"
uscc = "91330200MA0000009X"
name = "Ningbo Co."
[[enterprises.sites]]
code = "NB1"
name = "Ningbo plant 1"
edge_node = "NB1-GW"
timezone = "Asia/Shanghai"
shifts = "08:00-20:00"
[[enterprises.sites.lines]]
code = "L"
name = "Line"
maintenance = [
  {{ start = 2026-10-05T19:00:00+08:00, end = 2026-10-05T19:30:00+08:00, reason = "tools" }},
]
processes = [
  {{ code = "OP10", name = "OP10", is_key = true, key_reason = "bore", equipment = ["N1"] }},
  {{ code = "OP20", name = "OP20", is_key = {op20}, key_reason = "bore", equipment = ["N2"] }},
]
[[enterprises.sites.equipment]]
code = "N1"
name = "N1"
line = "L"
control_type = "CNC"
declared_nc = true
protocol = "none"
[[enterprises.sites.equipment]]
code = "N2"
name = "N2"
line = "L"
control_type = "CNC"
declared_nc = true
protocol = "none"
"""

CHANGE = T0 + timedelta(hours=1, minutes=17)
"""OP20 stops being a key process: 2026-10-05 11:17 UTC, 19:17 in Ningbo."""

# 10:00 UTC to 02:00 UTC the next day: 18:00 to 10:00 in Ningbo, across its midnight
EXPLAIN = {"from": "2026-10-05T18:00:00+08:00", "to": "2026-10-06T10:00:00+08:00"}
DAYS = {"from": "2026-10-05T18:00:00", "to": "2026-10-06T10:00:00", "bucket": "day"}


async def seed_ningbo(url: str) -> int:
    """The Ningbo enterprise, its registry change and its machines' states from 09:00 UTC;
    N1's spindle speed every 10 minutes. Its id."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        ids = await import_registry(
            conn, registry_from(parse_scenario(NINGBO.format(op20="true")).registry()), T0
        )
        await import_registry(
            conn, registry_from(parse_scenario(NINGBO.format(op20="false")).registry()), CHANGE
        )
        start = T0 - timedelta(hours=1)
        states = {"N1": ("AUTO", "EXECUTING"), "N2": ("MANUAL", "EXECUTING")}
        for code, values in states.items():
            cur = await conn.execute("SELECT id FROM equipment WHERE code = %s", (code,))
            (eid,) = await cur.fetchone() or (None,)
            await conn.execute(
                "INSERT INTO connectivity_session (group_id, edge_node_id, device_id,"
                " equipment_id, online_at) VALUES ('NB', 'NB1-GW', %s, %s, %s)",
                (code, eid, start),
            )
            for metric, value in zip(("State/Mode", "State/Execution"), values, strict=True):
                await conn.execute(
                    "WITH s AS (INSERT INTO series (group_id, edge_node_id, device_id, metric,"
                    " datatype, equipment_id) VALUES ('NB', 'NB1-GW', %s, %s, 12, %s)"
                    " RETURNING id) INSERT INTO sample_text (series_id, ts, value)"
                    " SELECT id, %s, %s FROM s",
                    (code, metric, eid, start, value),
                )
            if code == "N1":
                cur = await conn.execute(
                    "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                    " equipment_id) VALUES ('NB', 'NB1-GW', 'N1', 'Spindle/Speed', 10, %s)"
                    " RETURNING id",
                    (eid,),
                )
                (sid,) = await cur.fetchone() or (None,)
                for minute in range(0, 180, 10):
                    await conn.execute(
                        "INSERT INTO sample_num (series_id, ts, value) VALUES (%s, %s, %s)",
                        (sid, start + timedelta(minutes=minute), 1000.0 + minute),
                    )
        await conn.execute(
            "SELECT plantwire_rebuild_state_intervals(array_agg(id), array_agg(%s::timestamptz))"
            " FROM series WHERE group_id = 'NB' AND metric LIKE 'State/%%'",
            (start,),
        )
        await conn.commit()
    return int(ids["NB"])


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[tuple[str, int, dict[str, int]]]:
    """The partner tests' world (partner clients, datasets, telemetry) and the Ningbo
    enterprise, in one database; LEAD holds grants on SUP's telemetry and indicators."""
    ent, _, machine, dataset = await seed(database_url)
    nb = await seed_ningbo(database_url)
    async with in_process(settings(database_url)) as (_, client):
        w = World(client, database_url, ent, {}, machine, dataset, tokens(ent))
        start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=2)
        window = {"window_start": start.isoformat(), "window_end": end.isoformat()}
        await grant(w, "telem", purpose="maintenance", granularity="raw", **window)
        await grant(w, "ind", purpose="planning", **window)
    yield database_url, nb, dataset


async def answers(url: str, nb: int, dataset: dict[str, int], user: str) -> dict[str, bytes]:
    """Every answer under test, as the bytes the API and the command line give."""
    out: dict[str, bytes] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT code, id FROM enterprise")
        ent = {c: i for c, i in await cur.fetchall()}
    lead = {"Authorization": f"Bearer {tokens(ent)['lead-app']}"}
    async with in_process(settings(url)) as (_, client):
        client.headers.update(await person(client, url, user, "platform_admin"))
        api = f"/api/v1/enterprises/{nb}"
        asked = {
            "explain": (f"{api}/indicators/explain", EXPLAIN),
            "indicators by local day": (f"{api}/indicators", DAYS),
            "registry export": (f"{api}/registry", {}),
            "registry export json": (f"{api}/registry", {"format": "json"}),
            "machine history": (
                f"{api}/sites/NB1/equipment/N1/history",
                {
                    "from": "2026-10-05T17:05:00+08:00",
                    "to": "2026-10-05T19:35:00+08:00",
                    "metric": "Spindle/Speed",
                },
            ),
        }
        for name, (path, params) in asked.items():
            r = await client.get(path, params=params)
            assert r.status_code == 200, (name, r.text)
            out[name] = r.content
        partner = {
            "partner telemetry": (
                f"/partner/v1/datasets/{dataset['telem']}/telemetry",
                {"purpose": "maintenance", "from": "2026-10-05T17:30:00+08:00",
                 "to": "2026-10-05T18:15:00+08:00"},
            ),
            "partner telemetry csv": (
                f"/partner/v1/datasets/{dataset['telem']}/telemetry",
                {"purpose": "maintenance", "from": "2026-10-05T09:30:00Z",
                 "to": "2026-10-05T10:15:00Z", "format": "csv"},
            ),
            "partner indicators by day": (
                f"/partner/v1/datasets/{dataset['ind']}/indicators",
                {"purpose": "planning", "from": "2026-10-05T09:00:00Z",
                 "to": "2026-10-05T12:00:00Z", "bucket": "day"},
            ),
        }  # fmt: skip
        for name, (path, params) in partner.items():
            r = await client.get(path, params=params, headers=lead)
            assert r.status_code == 200, (name, r.text)
            out[name] = r.content
    for fmt in ("toml", "csv"):
        code, said = await platform_command(url, "registry", "export", "NB", "--format", fmt)
        assert code == 0, said
        out[f"registry export {fmt} (command line)"] = said.encode()
    return out


async def test_no_answer_depends_on_the_database_servers_time_zone(
    world: tuple[str, int, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, nb, dataset = world
    monkeypatch.delenv("PGTZ", raising=False)
    utc = await answers(url, nb, dataset, "root")
    # what a server in UTC answers, checked by hand where the times are
    explain = httpx.Response(200, content=utc["explain"]).json()
    assert [(s["from"], s["to"]) for s in explain["segments"]] == [
        ("2026-10-05T18:00:00+08:00", "2026-10-05T11:17:00Z"),
        ("2026-10-05T11:17:00Z", "2026-10-06T10:00:00+08:00"),
    ]
    # the line's maintenance, 19:00-19:30 in Ningbo
    maintenance = '"start": "2026-10-05T11:00:00Z", "end": "2026-10-05T11:30:00Z"'
    assert maintenance in utc["registry export json"].decode()
    maintenance = 'start = "2026-10-05T11:00:00Z", end = "2026-10-05T11:30:00Z"'
    assert maintenance in utc["registry export toml (command line)"].decode()

    await far_zone(url, monkeypatch)  # PGTZ: the API's worker processes inherit it, as the CLI
    far = await answers(url, nb, dataset, "root2")
    differ = {name: (answer, far[name]) for name, answer in utc.items() if far[name] != answer}
    assert not differ, "\n".join(f"{k}:\n {a!r}\n {b!r}" for k, (a, b) in differ.items())
