"""Partner data reads: cursor pages, CSV, bucketed indicator series, time bounds."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import psycopg

from tests.platform.partner.conftest import EVENTS, SAMPLES, T0, World, grant


async def test_pages_and_csv_cover_exactly_the_grant(world: World) -> None:
    w = world
    await grant(
        w,
        "telem",
        purpose="maintenance",
        granularity="raw",
        equipment_ids=[w.machine["M2"]],
        window_end=T0.isoformat(),
    )
    url = f"/partner/v1/datasets/{w.dataset['telem']}/telemetry"
    expected = sorted(
        (ts, metric, v)
        for m, metric, ts, v in SAMPLES
        if m == "M2" and not metric.startswith("State/") and ts < T0  # numeric series only
    )
    assert len(expected) == 14
    got: list[tuple[datetime, str, float]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"purpose": "maintenance", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = await w.client.get(url, params=params, headers=w.auth("lead-app"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["granularity"] == "raw"
        got += [(datetime.fromisoformat(i["ts"]), i["metric"], i["value"]) for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(got) == expected and pages == 5
    first: dict[str, Any] = {"purpose": "maintenance", "limit": 5}
    as_json = (await w.client.get(url, params=first, headers=w.auth("lead-app"))).json()
    r = await w.client.get(url, params={**first, "format": "csv"}, headers=w.auth("lead-app"))
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-next-cursor"] == as_json["next_cursor"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [
        (datetime.fromisoformat(x["ts"]), x["equipment"], x["metric"], float(x["value"]))
        for x in rows
    ] == [
        (datetime.fromisoformat(i["ts"]), i["equipment"], i["metric"], i["value"])
        for i in as_json["items"]
    ]
    bad = await w.client.get(
        url, params={"purpose": "maintenance", "cursor": "!!"}, headers=w.auth("lead-app")
    )
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request")


async def test_indicator_series_by_day_within_the_granted_window(world: World) -> None:
    w = world
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=2)
    await grant(
        w, "ind", purpose="planning", window_start=start.isoformat(), window_end=end.isoformat()
    )
    url = f"/partner/v1/datasets/{w.dataset['ind']}/indicators"
    r = await w.client.get(
        url,
        params={
            "purpose": "planning",
            "from": start.isoformat(),
            "to": end.isoformat(),
            "bucket": "day",
        },
        headers=w.auth("lead-app"),
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["from"], i["to"]) for i in items] == [
        ("2026-10-05T09:00:00Z", "2026-10-05T12:00:00Z")
    ]
    names = {i["name"] for i in items[0]["indicators"]}
    assert {"nc_rate_declared", "nc_rate_verified", "networking_rate"} <= names
    as_csv = await w.client.get(
        url,
        params={
            "purpose": "planning",
            "from": start.isoformat(),
            "to": end.isoformat(),
            "format": "csv",
        },
        headers=w.auth("lead-app"),
    )
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(x["name"], x["value"]) for x in table] == [
        (i["name"], "" if i["value"] is None else str(i["value"])) for i in items[0]["indicators"]
    ]
    # without bounds the series stops at the grant's end, in SQL
    r = await w.client.get(url, params={"purpose": "planning"}, headers=w.auth("lead-app"))
    assert r.status_code == 200 and r.json()["items"] == []  # the last day lies after the grant


async def test_indicator_answers_follow_new_data(world: World) -> None:
    """A past window's indicators are reused only while the supplier's data versions hold: a
    new state sample, a new connectivity session or a registry change raises them (in the same
    transaction), and the next answer is the engine's new one."""
    w = world
    start, end = (T0 - timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=2)).isoformat()
    await grant(w, "ind", purpose="quality", window_start=start, window_end=end)
    window = {"from": start, "to": end}

    async def partner() -> list[dict[str, Any]]:
        r = await w.client.get(
            f"/partner/v1/datasets/{w.dataset['ind']}/indicators",
            params={**window, "purpose": "quality"},
            headers=w.auth("lead-app"),
        )
        assert r.status_code == 200, r.text
        values: list[dict[str, Any]] = r.json()["items"][0]["indicators"]
        return [{k: v for k, v in i.items() if v is not None} for i in values]

    async def engine() -> list[dict[str, Any]]:
        r = await w.client.get(
            f"/api/v1/enterprises/{w.ent['SUP']}/indicators",
            params=window,
            headers=w.auth("admin"),
        )
        values: list[dict[str, Any]] = r.json()["indicators"]
        return values

    async def versions(conn: psycopg.AsyncConnection[Any]) -> dict[int, int]:
        cur = await conn.execute("SELECT enterprise_id, version FROM partner_data_version")
        return dict(await cur.fetchall())

    before = await partner()
    assert before == await engine() and before == await partner()
    sup, lead = w.ent["SUP"], w.ent["LEAD"]
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        v0 = await versions(conn)
        await conn.execute(
            "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, 'MDI' FROM series"
            " WHERE device_id = 'M1' AND metric = 'State/Mode'",
            (T0 + timedelta(minutes=65),),
        )
        v1 = await versions(conn)
        await conn.execute(  # a numeric sample: no indicator reads it
            "INSERT INTO sample_num (series_id, ts, value) SELECT id, %s, 1 FROM series"
            " WHERE device_id = 'M1' AND metric = 'Spindle/Load'",
            (T0 + timedelta(minutes=66),),
        )
        await conn.execute("UPDATE series SET datatype = datatype WHERE device_id = 'M2'")
        v2 = await versions(conn)
        await conn.execute(
            "UPDATE connectivity_session SET offline_at = %s WHERE device_id = 'M2'",
            (T0 + timedelta(minutes=100),),
        )
        await conn.execute("UPDATE site SET shifts = shifts WHERE code = 'S1'")
        v3 = await versions(conn)
    assert v1.get(sup, 0) == v0.get(sup, 0) + 1 and v1.get(lead, 0) == v0.get(lead, 0)
    assert v2 == v1  # nothing an indicator reads
    assert v3[sup] == v2[sup] + 1 and v3[0] == v2[0] + 1
    after = await partner()
    assert after == await engine() and after != before


async def test_raw_alarms_and_events_in_pages(world: World) -> None:
    w = world
    await grant(
        w,
        "alarms",
        purpose="quality",
        granularity="raw",
        equipment_ids=[w.machine["M1"]],
        window_end=T0.isoformat(),
    )
    expected = sorted((ts, name, v) for m, _, name, ts, v in EVENTS if m == "M1" and ts < T0)
    assert len(expected) == 5
    url = f"/partner/v1/datasets/{w.dataset['alarms']}/alarms"
    got: list[tuple[datetime, str, str]] = []
    params: dict[str, Any] = {"purpose": "quality", "limit": 2}
    while True:
        r = await w.client.get(url, params=params, headers=w.auth("lead-app"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["granularity"] == "raw" and all(i["n"] == 1 for i in body["items"])
        got += [(datetime.fromisoformat(i["ts"]), i["metric"], i["value"]) for i in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert sorted(got) == expected
    as_csv = await w.client.get(
        url, params={"purpose": "quality", "format": "csv"}, headers=w.auth("lead-app")
    )
    assert [row["value"] for row in csv.DictReader(io.StringIO(as_csv.text))] == [
        v for _, _, v in expected
    ]
