"""Editing the registry one entry at a time through ``/api/v1`` on a real PostgreSQL: an
enterprise's admin builds a plant (site with its gateway, a line, two key process steps, two
machines) entry by entry, then re-declares one machine as NC from a given time. The declared
NC rate (by hand: 1 of 2 key steps before, 2 of 2 after) changes from that time on; the
earlier window keeps its figure. Bad edits are refused with the field named, and nothing is
written. The command line does the same."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import Enterprise, Registry
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from tests.platform.commands import platform_command
from tests.platform.identities import person, secured

BUILT = "2026-10-01T00:00:00Z"
CHANGED = "2026-10-05T00:00:00Z"
BEFORE = {"from": "2026-10-02T00:00:00Z", "to": "2026-10-03T00:00:00Z"}
AFTER = {"from": "2026-10-06T00:00:00Z", "to": "2026-10-07T00:00:00Z"}


@pytest.fixture
async def plant(
    database_url: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        root = await person(client, database_url, "root", "platform_admin")
        made = await client.post(
            "/api/v1/enterprises",
            json={"code": "HXP", "uscc": "91320500000000001X", "name": "HXP Co."},
            headers=root,
        )
        assert made.status_code == 201, made.text
        ent = made.json()["enterprise_id"]
        admin = await person(client, database_url, "hxp-admin", "enterprise_admin", ent)
        viewer = await person(client, database_url, "hxp-viewer", "enterprise_viewer", ent)
        yield client, {"ent": ent, "admin": admin, "viewer": viewer, "url": database_url}


async def declared(client: httpx.AsyncClient, base: str, headers: Any, window: Any) -> Any:
    got = await client.get(f"{base}/indicators", params=window, headers=headers)
    assert got.status_code == 200, got.text
    rate = {i["name"]: i for i in got.json()["indicators"]}["nc_rate_declared"]
    return rate["numerator"], rate["denominator"]


async def test_a_machine_redeclared_nc_changes_the_rate_from_then_on(
    plant: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, w = plant
    base, admin = f"/api/v1/enterprises/{w['ent']}", w["admin"]
    at = {"effective": BUILT}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("/sites", {"code": "SZ", "name": "Suzhou", "edge_node": "gw-sz"}),
        ("/sites/SZ/lines", {"code": "L1", "name": "Line 1"}),
        ("/sites/SZ/lines/L1/processes",
         {"code": "OP10", "name": "Turning", "is_key": True, "key_reason": "tolerance"}),
        ("/sites/SZ/lines/L1/processes",
         {"code": "OP20", "name": "Milling", "is_key": True, "key_reason": "surface"}),
        ("/sites/SZ/equipment",
         {"code": "M1", "name": "Lathe", "line": "L1", "control_type": "CNC",
          "declared_nc": True, "processes": ["OP10"]}),
        ("/sites/SZ/equipment",
         {"code": "M2", "name": "Mill", "line": "L1", "control_type": "CNC",
          "declared_nc": False, "processes": ["OP20"]}),
    ]  # fmt: skip
    for path, body in steps:
        got = await client.post(base + path, json=body, params=at, headers=admin)
        assert got.status_code == 201, (path, got.text)
    assert got.json()["key_processes"] == 2 and got.json()["equipment"] == 2

    async def refused(method: str, path: str, body: Any, headers: Any = admin) -> Any:
        got = await client.request(method, base + path, json=body, headers=headers)
        return got.status_code, got.json()["error"], got.json()["detail"]

    assert (await refused("PATCH", "/sites/SZ/equipment/M2", {"declared_nc": True}, w["viewer"]))[
        :2
    ] == (403, "role_forbidden")
    status, error, detail = await refused(
        "PATCH", "/sites/SZ/equipment/M1", {"control_type": "MANUAL"}
    )
    assert (status, error) == (422, "invalid_request") and "cannot be declared NC" in detail
    status, error, detail = await refused(
        "PATCH", "/sites/SZ/lines/L1/processes/OP20", {"key_reason": ""}
    )
    assert (status, error) == (422, "invalid_request")
    where = "sites[0].lines[0].processes[1].key_reason"
    assert detail == f"{where}: key process OP20 names why it is key"
    status, error, detail = await refused("PATCH", "/sites/SZ/equipment/M2", {"nc": True})
    assert status == 422 and detail.startswith("nc: not a field")
    status, error, detail = await refused(
        "PATCH", "/sites/SZ/equipment/M2", {"control_type": "LASER"}
    )
    assert status == 422 and detail.startswith("sites[0].equipment[1].control_type:")
    assert (await refused("PATCH", "/sites/XX/equipment/M2", {"declared_nc": True}))[:2] == (
        404,
        "not_found",
    )
    dup = {"code": "L1", "name": "again"}
    assert (await refused("POST", "/sites/SZ/lines", dup))[:2] == (409, "conflict")

    # nothing of the refused edits was written: 1 of 2 key steps declared NC
    assert await declared(client, base, admin, BEFORE) == (1, 2)
    assert await declared(client, base, admin, AFTER) == (1, 2)

    changed = await client.patch(
        base + "/sites/SZ/equipment/M2",
        json={"declared_nc": True},
        params={"effective": CHANGED},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert await declared(client, base, admin, AFTER) == (2, 2)
    assert await declared(client, base, admin, BEFORE) == (1, 2)

    exported = await client.get(f"{base}/registry", params={"format": "json"}, headers=admin)
    [site] = exported.json()["sites"]
    assert [(e["code"], e["declared_nc"]) for e in site["equipment"]] == [
        ("M1", True),
        ("M2", True),
    ]
    assert [p["equipment"] for p in site["lines"][0]["processes"]] == [["M1"], ["M2"]]
    async with await psycopg.AsyncConnection.connect(w["url"]) as conn:
        cur = await conn.execute(
            "SELECT action, outcome, reason, status FROM partner_audit"
            " WHERE action LIKE 'enterprise.%%.c%%' ORDER BY id"
        )
        audit = await cur.fetchall()
    assert audit[:6] == [(a, "allowed", "own_enterprise", 201) for a in (
        "enterprise.site.create", "enterprise.line.create", "enterprise.process.create",
        "enterprise.process.create", "enterprise.equipment.create",
        "enterprise.equipment.create")]  # fmt: skip
    assert audit[6] == ("enterprise.equipment.change", "denied", "role_forbidden", 403)
    assert audit[-1] == ("enterprise.equipment.change", "allowed", "own_enterprise", 200)
    assert len(audit) == 6 + 7 + 1


async def test_a_lines_calendar_and_maintenance_set_its_planned_time(
    plant: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    """An admin gives line L1 of a site that plans all day its own shift, 08:00-12:00 on
    weekdays, and planned maintenance 09:00-10:00 on Monday 2026-10-05 (Shanghai): the
    lathe's planned time on that Monday is 3 h, on Tuesday 4 h, on Saturday none. A window
    whose end is not after its start is refused with the field named."""
    client, w = plant
    base, admin = f"/api/v1/enterprises/{w['ent']}", w["admin"]
    for path, body in [
        ("/sites", {"code": "SZ", "name": "Suzhou", "edge_node": "gw-sz"}),
        ("/sites/SZ/lines", {"code": "L1", "name": "Line 1"}),
        ("/sites/SZ/equipment",
         {"code": "M1", "name": "Lathe", "line": "L1", "control_type": "CNC", "declared_nc": True}),
    ]:  # fmt: skip
        got = await client.post(base + path, json=body, params={"effective": BUILT}, headers=admin)
        assert got.status_code == 201, (path, got.text)
    calendar = {
        "shifts": "08:00-12:00",
        "workdays": [0, 1, 2, 3, 4],
        "maintenance": [{"start": "2026-10-05T09:00:00+08:00", "end": "2026-10-05T10:00:00+08:00"}],
    }
    bad = {"maintenance": [{"start": "2026-10-05T10:00:00+08:00", "end": "2026-10-05T01:00Z"}]}
    refused = await client.patch(base + "/sites/SZ/lines/L1", json=bad, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "sites[0].lines[0].maintenance[0]: maintenance from 2026-10-05T10:00:00+08:00: "
        "end is not after start"
    )
    changed = await client.patch(base + "/sites/SZ/lines/L1", json=calendar, headers=admin)
    assert changed.status_code == 200, changed.text

    async def planned(day: str) -> float:
        window = {"from": f"{day}T00:00:00+08:00", "to": f"{day}T23:59:59+08:00"}
        got = await client.get(f"{base}/indicators/explain", params=window, headers=admin)
        assert got.status_code == 200, got.text
        [machine] = got.json()["equipment"]
        return float(machine["oee"]["planned_s"])

    assert await planned("2026-10-05") == 3 * 3600  # Monday: 08-09, 10-12
    assert await planned("2026-10-06") == 4 * 3600  # Tuesday
    assert await planned("2026-10-10") == 0  # Saturday
    exported = await client.get(f"{base}/registry", params={"format": "json"}, headers=admin)
    [line] = exported.json()["sites"][0]["lines"]
    assert (line["shifts"], line["workdays"]) == ("08:00-12:00", [0, 1, 2, 3, 4])
    [window] = line["maintenance"]
    assert datetime.fromisoformat(window["start"]) == datetime.fromisoformat(
        "2026-10-05T09:00:00+08:00"
    )


async def cli(url: str, *args: str) -> tuple[int, str]:
    """``plantwire platform registry <args>`` against the database at ``url``."""
    return await platform_command(url, "registry", *args)


async def test_the_command_line_edits_one_entry_the_same_way(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(
            conn,
            Registry(enterprises=(Enterprise(code="HXP", uscc="91320500000000001X", name="H"),)),
        )
    steps = [
        ("add", "site", "-", {"code": "SZ", "name": "Suzhou", "edge_node": "gw-sz"}),
        ("add", "line", "SZ", {"code": "L1", "name": "Line 1"}),
        ("add", "process", "SZ/L1",
         {"code": "OP10", "name": "Turning", "is_key": True, "key_reason": "tolerance"}),
        ("add", "equipment", "SZ",
         {"code": "M1", "name": "Lathe", "line": "L1", "control_type": "CNC",
          "declared_nc": False, "processes": ["OP10"]}),
    ]  # fmt: skip
    for verb, kind, where, body in steps:  # the machine is there since it was built
        code, out = await cli(
            database_url, verb, "HXP", kind, where, json.dumps(body), "--effective", BUILT
        )
        assert code == 0, out
    code, out = await cli(
        database_url, "change", "HXP", "equipment", "SZ/M1", '{"control_type": "MANUAL",'
        ' "declared_nc": true}',
    )  # fmt: skip
    assert code == 2 and "cannot be declared NC" in out and "nothing written" in out
    code, out = await cli(
        database_url, "change", "HXP", "equipment", "SZ/M1", '{"declared_nc": true}',
        "--effective", CHANGED,
    )  # fmt: skip
    assert code == 0 and "equipment SZ/M1 changed" in out, out
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT valid_from, valid_to, declared_nc, control_type FROM equipment_history"
            " ORDER BY valid_from"
        )
        history = await cur.fetchall()
    built, changed = datetime.fromisoformat(BUILT), datetime.fromisoformat(CHANGED)
    assert [row[:3] for row in history] == [(built, changed, False), (changed, None, True)]
    assert {row[3] for row in history} == {"CNC"}
