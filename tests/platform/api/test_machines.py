"""The floor and one machine's history through ``/api/v1`` on a hand-made plant (real
database, both backends): what each machine shows now, its intervals, a metric, sessions and
clock offset, each compared with the rows the test wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from plantwire_platform.server import create_app
from tests.platform.identities import person, secured

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def seed(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:

        async def one(sql: str, *params: Any) -> Any:
            cur = await conn.execute(sql.encode(), params)
            row = await cur.fetchone()
            return row[0] if row else None

        ent = await one(
            "INSERT INTO enterprise (code, uscc, name) VALUES ('FLR', '91320000MA1FL00R1X',"
            " 'Floor Co.') RETURNING id"
        )
        site = await one(
            "INSERT INTO site (enterprise_id, code, name, timezone, edge_node_id)"
            " VALUES (%s, 'S1', 'Site', 'Asia/Shanghai', 'GW') RETURNING id",
            ent,
        )
        line = await one(
            "INSERT INTO line (site_id, code, name) VALUES (%s, 'L1', 'Line') RETURNING id", site
        )
        m1 = await one(
            "INSERT INTO equipment (site_id, line_id, code, name, control_type, declared_nc)"
            " VALUES (%s, %s, 'M1', 'Lathe', 'CNC', true) RETURNING id",
            site,
            line,
        )
        await one(
            "INSERT INTO equipment (site_id, line_id, code, name, control_type, declared_nc)"
            " VALUES (%s, NULL, 'M2', 'Bench', 'MANUAL', false) RETURNING id",
            site,
        )
        ids = {}
        for metric, datatype in (
            ("State/Mode", 12),
            ("State/Execution", 12),
            ("Production/PartCount", 10),
            ("Alarm/Spindle", 12),
            ("Alarm/Door", 12),
            ("Spindle/Speed", 10),
            ("Clock/Offset", 4),
        ):
            ids[metric] = await one(
                "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                " equipment_id) VALUES ('FLR', 'GW', 'M1', %s, %s, %s) RETURNING id",
                metric,
                datatype,
                m1,
            )
        for metric, start, end, value in (
            ("State/Mode", at(0), at(10), "AUTO"),
            ("State/Mode", at(10), None, "MANUAL"),
            ("State/Execution", at(0), at(20), "EXECUTING"),
            ("State/Execution", at(20), None, "IDLE"),
        ):
            await conn.execute(
                "INSERT INTO state_interval (series_id, start_at, end_at, value)"
                " VALUES (%s, %s, %s, %s)",
                (ids[metric], start, end, value),
            )
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at, offline_at) VALUES ('FLR', 'GW', 'M1', %s, %s, %s),"
            " ('FLR', 'GW', 'M1', %s, %s, NULL)",
            (m1, at(-120), at(-60), m1, at(0)),
        )
        for metric, ts, value in (
            ("Alarm/Door", at(5), "door open"),
            ("Alarm/Spindle", at(12), "overheat"),
            ("Alarm/Door", at(15), "0"),  # the door's alarm cleared after the spindle's
        ):
            await conn.execute(
                "INSERT INTO event (ts, group_id, edge_node_id, device_id, kind, name, series_id,"
                " value) VALUES (%s, 'FLR', 'GW', 'M1', 'alarm', %s, %s, %s)",
                (ts, metric, ids[metric], value),
            )
        samples = [
            ("Production/PartCount", at(10), 5.0),
            ("Production/PartCount", at(20), 7.0),
            ("Clock/Offset", at(1), -1200.0),
            ("Clock/Offset", at(21), 250.0),
            *[("Spindle/Speed", at(25) + timedelta(seconds=s), 1000.0 + s) for s in range(4)],
        ]
        for metric, ts, number in samples:
            await conn.execute(
                "INSERT INTO sample_num (series_id, ts, value) VALUES (%s, %s, %s)",
                (ids[metric], ts, number),
            )
        await conn.commit()
        return int(ent)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    ent = await seed(database_url)
    # the database's own zone is half an hour off UTC (a server in India): the API answers in
    # UTC all the same
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        name = sql.Identifier(conn.info.dbname)
        await conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'Asia/Kolkata'").format(name))
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        client.headers.update(
            await person(client, database_url, "floor.admin", "enterprise_admin", ent)
        )
        yield client, ent


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


async def test_the_floor_shows_each_machine_now(
    backend: str, api: tuple[httpx.AsyncClient, int]
) -> None:
    client, ent = api
    got = await client.get(f"/api/v1/enterprises/{ent}/floor")
    assert got.status_code == 200, got.text
    m1, m2 = got.json()["machines"]
    assert (m1["code"], m1["line"], m1["timezone"]) == ("M1", "L1", "Asia/Shanghai")
    assert (m1["mode"], m1["mode_since"]) == ("MANUAL", iso(at(10)))
    assert (m1["execution"], m1["execution_since"]) == ("IDLE", iso(at(20)))
    assert (m1["online"], m1["online_since"]) == (True, iso(at(0)))
    assert (m1["alarm"], m1["alarm_value"], m1["alarm_at"]) == (
        "Alarm/Spindle",
        "overheat",
        iso(at(12)),
    )
    assert (m1["parts"], m1["parts_at"]) == (7.0, iso(at(20)))
    assert m2["code"] == "M2" and m2["online"] is False
    assert [m2[k] for k in ("mode", "execution", "alarm", "parts", "online_since")] == [None] * 5
    other_site = await client.get(f"/api/v1/enterprises/{ent}/floor", params={"site": "S9"})
    assert other_site.status_code == 404


async def test_the_floor_as_server_sent_events(
    backend: str, api: tuple[httpx.AsyncClient, int]
) -> None:
    client, ent = api
    headers = {"Accept": "text/event-stream"}
    url = f"/api/v1/enterprises/{ent}/floor"
    got = await client.get(url, params={"max_s": 0}, headers=headers)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/event-stream")
    event, data, end = got.text.split("\n")[:3]
    assert (event, end) == ("event: floor", "")
    assert [m["code"] for m in httpx.Response(200, content=data[6:]).json()["machines"]] == [
        "M1",
        "M2",
    ]


async def test_one_machine_over_a_window(backend: str, api: tuple[httpx.AsyncClient, int]) -> None:
    client, ent = api
    window = {"from": iso(at(5)), "to": iso(at(26)), "metric": "Spindle/Speed"}
    got = await client.get(
        f"/api/v1/enterprises/{ent}/sites/S1/equipment/M1/history", params=window
    )
    assert got.status_code == 200, got.text
    h = got.json()
    assert [(i["start"], i["end"], i["value"]) for i in h["mode"]] == [
        (iso(at(0)), iso(at(10)), "AUTO"),
        (iso(at(10)), None, "MANUAL"),
    ]
    assert [(i["start"], i["end"], i["value"]) for i in h["execution"]] == [
        (iso(at(0)), iso(at(20)), "EXECUTING"),
        (iso(at(20)), None, "IDLE"),
    ]
    assert h["metrics"] == ["Clock/Offset", "Production/PartCount", "Spindle/Speed"]
    ((series),) = h["series"]
    assert series["bucket_s"] == 2.1  # 21 minutes into at most 600 points
    # four samples a second apart at 1200..1203 s past the window's start, binned from it in
    # 2.1 s steps: [1199.1, 1201.2) holds 1200 and 1201, [1201.2, 1203.3) holds 1202 and 1203
    assert [p["value"] for p in series["points"]] == [1000.5, 1002.5]
    assert series["points"][0]["ts"] == iso(at(5) + timedelta(seconds=571 * 2.1))
    assert [(s["online_at"], s["offline_at"]) for s in h["sessions"]] == [(iso(at(0)), None)]
    assert h["clock"] == {"offset_s": 0.25, "at": iso(at(21))}
    early = {"from": iso(at(-130)), "to": iso(at(-50))}
    got = await client.get(f"/api/v1/enterprises/{ent}/sites/S1/equipment/M1/history", params=early)
    h = got.json()
    assert [(s["online_at"], s["offline_at"]) for s in h["sessions"]] == [
        (iso(at(-120)), iso(at(-60)))
    ]
    assert h["clock"] == {"offset_s": None, "at": None} and h["mode"] == []
    unknown = {**window, "metric": "State/Mode"}
    got = await client.get(
        f"/api/v1/enterprises/{ent}/sites/S1/equipment/M1/history", params=unknown
    )
    assert got.status_code == 422 and got.json()["error"] == "invalid_request"
    missing = await client.get(f"/api/v1/enterprises/{ent}/sites/S1/equipment/M9/history")
    assert missing.status_code == 404
