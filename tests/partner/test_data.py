"""Partner data reads: cursor pages, CSV, bucketed indicator series, time bounds."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from tests.partner.conftest import SAMPLES, T0, World, grant


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
