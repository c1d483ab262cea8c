"""Indicators through the HTTP API on a real PostgreSQL, against values computed by hand.

The fixture writes registry and telemetry straight into the database: a chain with a leader and
two suppliers, two parks, a registry change in the middle of the window, a machine declared NC
that runs by hand, and a key process without telemetry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from plantwire_sim.scenario import parse_scenario
from tests.platform.identities import person, secured

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)  # window 10:00-12:00 UTC
WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=2)).isoformat()}

REGISTRY = """
name = "golden"
[[parks]]
code = "NORTH"
name = "North park"
region = "CN-JS"
[[parks]]
code = "SOUTH"
name = "South park"
region = "CN-ZJ"
[[chains]]
code = "GEAR"
name = "Gearbox chain"
leader = "LEAD"
members = [{{ enterprise = "SUP1", tier = 1 }}, {{ enterprise = "SUP2", tier = 2 }}]
{enterprises}
"""

ENTERPRISE = """
[[enterprises]]
code = "{code}"
uscc = "{uscc}"
name = "{code} Co."
park = "{park}"
[[enterprises.sites]]
code = "S"
name = "Site"
edge_node = "GW"
timezone = "UTC"
[[enterprises.sites.lines]]
code = "L1"
name = "Line"
processes = [{processes}]
{machines}
"""

MACHINE = """
[[enterprises.sites.equipment]]
code = "{code}"
name = "{code}"
line = "L1"
control_type = "CNC"
declared_nc = true
protocol = "none"
"""


def registry(op20_key: bool) -> str:
    def ent(code: str, uscc: str, park: str, processes: list[tuple[str, str, bool]]) -> str:
        procs = ", ".join(
            f'{{ code = "{p}", name = "{p}", is_key = {str(k).lower()}, key_reason = "fit",'
            f' equipment = ["{m}"] }}'
            for p, m, k in processes
        )
        machines = "".join(MACHINE.format(code=m) for _, m, _ in processes)
        return ENTERPRISE.format(
            code=code, uscc=uscc, park=park, processes=procs, machines=machines
        )

    return REGISTRY.format(
        enterprises="".join(
            [
                ent("LEAD", "91110000MA0000001X", "NORTH", [("OP10", "A1", True)]),
                ent(
                    "SUP1",
                    "91110000MA0000002X",
                    "NORTH",
                    [("OP10", "B1", True), ("OP20", "B2", op20_key)],
                ),
                ent("SUP2", "91110000MA0000003X", "SOUTH", [("OP10", "C1", True)]),
            ]
        )
    )


# (machine, minutes after 09:00, mode, execution); every machine online from 09:00
STATES = [
    ("A1", 0, "AUTO", "EXECUTING"),
    ("B1", 0, "AUTO", "EXECUTING"),
    ("B1", 90, "AUTO", "IDLE"),  # 10:30 idle, 10:45 executing again: still 100 % AUTO
    ("B1", 105, "AUTO", "EXECUTING"),
    ("B2", 0, "MANUAL", "EXECUTING"),  # declared NC, run by hand...
    ("B2", 90, "AUTO", "EXECUTING"),  # ...except 10:30-10:36
    ("B2", 96, "MANUAL", "EXECUTING"),
    # C1 (SUP2) has no telemetry at all
]


async def seed(database_url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ids = await import_registry(conn, registry_from(parse_scenario(registry(True)).registry()))
        # at 11:00 SUP1 declares OP20 no longer a key process
        await import_registry(
            conn, registry_from(parse_scenario(registry(False)).registry()), T0 + timedelta(hours=1)
        )
        start = T0 - timedelta(hours=1)
        for code in ("A1", "B1", "B2"):
            group = {"A": "LEAD", "B": "SUP1"}[code[0]]
            await conn.execute(
                "INSERT INTO connectivity_session (group_id, edge_node_id, device_id,"
                " equipment_id, online_at) SELECT %s, 'GW', %s, e.id, %s FROM equipment e"
                " JOIN site s ON s.id = e.site_id JOIN enterprise x ON x.id = s.enterprise_id"
                " WHERE x.code = %s AND e.code = %s",
                (group, code, start, group, code),
            )
            for metric in ("State/Mode", "State/Execution"):
                await conn.execute(
                    "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                    " equipment_id) SELECT %s, 'GW', %s, %s, 12, e.id FROM equipment e"
                    " JOIN site s ON s.id = e.site_id JOIN enterprise x ON x.id = s.enterprise_id"
                    " WHERE x.code = %s AND e.code = %s",
                    (group, code, metric, group, code),
                )
        for code, minutes, mode, execution in STATES:
            ts = start + timedelta(minutes=minutes)
            for metric, value in (("State/Mode", mode), ("State/Execution", execution)):
                await conn.execute(
                    "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, %s FROM series"
                    " WHERE device_id = %s AND metric = %s ON CONFLICT DO NOTHING",
                    (ts, value, code, metric),
                )
        await conn.commit()
        return ids


async def insert_counters(
    conn: psycopg.AsyncConnection[Any],
    group: str,
    device: str,
    counts: dict[str, list[tuple[datetime, float]]],
) -> None:
    """Counter series of the machine ``device`` (of enterprise ``group``) and their readings:
    metric -> (time, value)."""
    for metric, readings in counts.items():
        await conn.execute(
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
            " equipment_id) SELECT %s, 'GW', %s, %s, 7, e.id FROM equipment e"
            " WHERE e.code = %s",
            (group, device, metric, device),
        )
        for ts, value in readings:
            await conn.execute(
                "INSERT INTO sample_num (series_id, ts, value) SELECT id, %s, %s FROM series"
                " WHERE device_id = %s AND metric = %s",
                (ts, value, device, metric),
            )


DAYS = {
    "from": (T0 - timedelta(hours=1)).isoformat(),
    "to": (T0 + timedelta(days=1, hours=2)).isoformat(),
}  # 2026-10-05 09:00 to 2026-10-06 12:00 UTC: a day bucket of 15 h, then one of 12 h


async def seed_production(database_url: str) -> None:
    """LEAD's A1 over :data:`DAYS`: ideal cycle 30 s, AUTO EXECUTING from 09:00 on the first
    day but IDLE 06:00-09:00 on the second, 1,200 parts (30 scrapped) the first day and 900
    (18 scrapped) the second, read as counters (minutes after 09:00 on the first day)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("UPDATE equipment SET ideal_cycle_s = 30 WHERE code = 'A1'")
        start = T0 - timedelta(hours=1)
        for minutes, execution in ((21 * 60, "IDLE"), (24 * 60, "EXECUTING")):
            await conn.execute(
                "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, %s FROM series"
                " WHERE device_id = 'A1' AND metric = 'State/Execution'",
                (start + timedelta(minutes=minutes), execution),
            )
        counts = {
            "Production/PartCount": ((0, 0), (12 * 60, 1200), (21 * 60, 1800), (26 * 60, 2100)),
            "Production/ScrapCount": ((0, 0), (12 * 60, 30), (26 * 60, 48)),
        }
        await insert_counters(
            conn,
            "LEAD",
            "A1",
            {m: [(start + timedelta(minutes=t), v) for t, v in r] for m, r in counts.items()},
        )
        await conn.commit()


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, int]]]:
    ids = await seed(database_url)
    app = create_app(secured(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        client.headers.update(await person(client, database_url, "root", "platform_admin"))
        yield client, ids


def values(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in body["indicators"]}


async def test_enterprise_across_a_registry_change(
    api: tuple[httpx.AsyncClient, dict[str, int]],
) -> None:
    client, ids = api
    r = await client.get(f"/api/v1/enterprises/{ids['SUP1']}/indicators", params=WINDOW)
    assert r.status_code == 200, r.text
    v = values(r.json())
    # 10-11: key {OP10, OP20}: declared 2, verified 1 (B2 AUTO 6 of 60 min). 11-12: key {OP10}:
    # declared 1, verified 1. Counts averaged over the two equal halves: 1.5 of 1.5 declared,
    # 1.0 of 1.5 verified.
    assert (v["nc_rate_declared"]["numerator"], v["nc_rate_declared"]["denominator"]) == (1.5, 1.5)
    assert (v["nc_rate_verified"]["numerator"], v["nc_rate_verified"]["denominator"]) == (1.0, 1.5)
    assert v["nc_rate_verified"]["value"] == pytest.approx(0.6667, abs=1e-4)
    # time-weighted: 10-11 credits OP10 1.0 + OP20 0.1; 11-12 credits OP10 1.0
    assert v["nc_rate_time_weighted"]["numerator"] == pytest.approx(0.5 * 1.1 + 0.5 * 1.0)
    assert v["networking_rate"]["value"] == 1.0
    explain = (
        await client.get(f"/api/v1/enterprises/{ids['SUP1']}/indicators/explain", params=WINDOW)
    ).json()
    first, second = explain["segments"]
    assert (first["from"], first["to"]) == ("2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z")
    op20 = {p["process"]: p for p in first["key_processes"]}["OP20"]
    assert op20["equipment"] == ["B2"] and op20["declared_nc"] and not op20["verified_nc"]
    assert op20["reason"] == "covered 100%, AUTO 10% of EXECUTING time < 80%"
    assert [p["process"] for p in second["key_processes"]] == ["OP10"]
    b1 = {e["equipment"]: e for e in explain["equipment"]}["B1"]
    assert b1["executing_s"] == 7200 - 15 * 60 and b1["auto_executing_s"] == b1["executing_s"]


async def test_chain_rolls_up_mean_beside_pooled(
    api: tuple[httpx.AsyncClient, dict[str, int]],
) -> None:
    client, ids = api
    chains = (await client.get("/api/v1/chains")).json()
    assert [(c["code"], c["suppliers"]) for c in chains] == [("GEAR", 2)]
    r = await client.get(f"/api/v1/chains/{chains[0]['id']}/indicators", params=WINDOW)
    assert r.status_code == 200, r.text
    body = r.json()
    verified = values(body)["nc_rate_verified"]
    # LEAD 1/1, SUP1 1.0/1.5, SUP2 0/1 (no telemetry): mean of rates, pooled ratio beside it
    assert verified["value"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-4)
    assert verified["pooled"] == pytest.approx(2 / 3.5, abs=1e-4)
    assert verified["enterprises"] == 3
    assert [m["id"] for m in body["members"]] == [ids["LEAD"], ids["SUP1"], ids["SUP2"]]
    assert values(body)["nc_rate_declared"]["value"] == 1.0


async def test_a_chain_by_day(api: tuple[httpx.AsyncClient, dict[str, int]]) -> None:
    """A group's buckets roll up its members' values of each bucket."""
    client, _ = api
    [chain] = (await client.get("/api/v1/chains")).json()
    r = await client.get(
        f"/api/v1/chains/{chain['id']}/indicators", params={**DAYS, "bucket": "day"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subject"]["timezone"] == "UTC"  # its enterprises' sites', where days are cut
    first, second = body["buckets"]
    assert (first["from"], second["from"]) == ("2026-10-05T09:00:00Z", "2026-10-06T00:00:00Z")
    # day one (15 h): SUP1 has OP20 key 09:00-11:00, run by hand (verified 1 of 2), then OP10
    # alone (1 of 1): 2/15 + 13/15 = 1 verified of 2 x 2/15 + 13/15 = 17/15; LEAD 1 of 1,
    # SUP2 0 of 1 (no telemetry). Day two: 1 of 1, 1 of 1, 0 of 1.
    day1, day2 = values(first)["nc_rate_verified"], values(second)["nc_rate_verified"]
    assert day1["value"] == pytest.approx((1 + 15 / 17 + 0) / 3, abs=1e-4)
    assert day1["pooled"] == pytest.approx(2 / (1 + 17 / 15 + 1), abs=1e-4)
    assert day2["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert day2["pooled"] == pytest.approx(2 / 3, abs=1e-4)
    assert values(first)["networking_rate"]["value"] == pytest.approx(2 / 3, abs=1e-4)


async def test_parks_and_regions(api: tuple[httpx.AsyncClient, dict[str, int]]) -> None:
    client, _ = api
    parks = {p["code"]: p for p in (await client.get("/api/v1/parks")).json()}
    assert parks["NORTH"]["enterprises"] == 2 and parks["SOUTH"]["enterprises"] == 1
    north = (
        await client.get(f"/api/v1/parks/{parks['NORTH']['id']}/indicators", params=WINDOW)
    ).json()
    assert values(north)["nc_rate_verified"]["value"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    regions = (await client.get("/api/v1/regions")).json()
    assert [(r["id"], r["enterprises"]) for r in regions] == [("CN-JS", 2), ("CN-ZJ", 1)]
    zj = (await client.get("/api/v1/regions/CN-ZJ/indicators", params=WINDOW)).json()
    assert values(zj)["nc_rate_verified"]["value"] == 0.0
    missing = await client.get("/api/v1/regions/NOWHERE/indicators", params=WINDOW)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert (await client.get("/api/v1/chains/abc/indicators")).status_code == 404


async def test_buckets_and_bad_windows(api: tuple[httpx.AsyncClient, dict[str, int]]) -> None:
    client, ids = api
    params = {
        "from": (T0 - timedelta(hours=1)).isoformat(),
        "to": (T0 + timedelta(days=1, hours=2)).isoformat(),
        "bucket": "day",
    }
    body = (await client.get(f"/api/v1/enterprises/{ids['LEAD']}/indicators", params=params)).json()
    assert [(b["from"], b["to"]) for b in body["buckets"]] == [
        ("2026-10-05T09:00:00Z", "2026-10-06T00:00:00Z"),
        ("2026-10-06T00:00:00Z", "2026-10-06T12:00:00Z"),
    ]
    bad = await client.get(
        f"/api/v1/enterprises/{ids['LEAD']}/indicators",
        params={"from": WINDOW["to"], "to": WINDOW["from"]},
    )
    assert bad.status_code == 422 and "'from' must be before 'to'" in bad.json()["detail"]


async def test_late_state_sample_invalidates_the_rollup(
    api: tuple[httpx.AsyncClient, dict[str, int]], database_url: str
) -> None:
    client, ids = api
    url = f"/api/v1/enterprises/{ids['SUP1']}/indicators"
    before = values((await client.get(url, params=WINDOW)).json())
    assert before["nc_rate_time_weighted"]["numerator"] == pytest.approx(1.05)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM usage_hour")
        assert (await cur.fetchone()) == (2,)  # 10:00-11:00 of B1 and B2 (11:00 is a cut)
        # a late sample: B2 switched to AUTO at 10:40 (it arrives after the hour was rolled up)
        await conn.execute(
            "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, 'AUTO' FROM series"
            " WHERE device_id = 'B2' AND metric = 'State/Mode'",
            (T0 + timedelta(minutes=40),),
        )
        await conn.commit()
        cur = await conn.execute(
            "SELECT count(*) FROM usage_hour u JOIN equipment e"
            " ON e.id = u.equipment_id WHERE e.code = 'B2'"
        )
        assert (await cur.fetchone()) == (0,)
    after = values((await client.get(url, params=WINDOW)).json())
    # 10-11: B2 AUTO 10:30-10:36 and 10:40-11:00 = 26 of 60 min
    assert after["nc_rate_time_weighted"]["numerator"] == pytest.approx(
        0.5 * (1 + 26 / 60) + 0.5, abs=1e-4
    )


async def test_enterprise_registry_tree(api: tuple[httpx.AsyncClient, dict[str, int]]) -> None:
    client, ids = api
    body = (await client.get(f"/api/v1/enterprises/{ids['SUP1']}")).json()
    (site,) = body["sites"]
    assert [(p["code"], p["is_key"], p["equipment"]) for p in site["processes"]] == [
        ("OP10", True, ["B1"]),
        ("OP20", False, ["B2"]),
    ]  # as registered now (after 11:00)
    assert {e["code"] for e in site["equipment"]} == {"B1", "B2"}
    assert (await client.get("/api/v1/enterprises/424242")).status_code == 404


async def test_mdi_share_and_quality_of_equipment_counting_good_parts(
    api: tuple[httpx.AsyncClient, dict[str, int]], database_url: str
) -> None:
    """MDI share: the covered key processes' MDI time over their EXECUTING time, as value and
    as numerator/denominator alike. Quality of equipment that counts good parts and scrap
    (an operator terminal) rather than every part: good / (good + scrap)."""
    client, ids = api
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        for minutes, mode in ((75, "MDI"), (81, "AUTO")):  # B1 in MDI 10:15-10:21
            await conn.execute(
                "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, %s FROM series"
                " WHERE device_id = 'B1' AND metric = 'State/Mode'",
                (T0 + timedelta(minutes=minutes - 60), mode),
            )
        counts = {
            "Production/GoodCount": ((-1, 100), (30, 130), (90, 150)),  # 50 good in the window
            "Production/ScrapCount": ((-1, 5), (60, 10)),  # 5 scrapped
        }
        await insert_counters(
            conn,
            "SUP1",
            "B1",
            {m: [(T0 + timedelta(minutes=t), v) for t, v in r] for m, r in counts.items()},
        )
        await conn.commit()
    url = f"/api/v1/enterprises/{ids['SUP1']}/indicators"
    mdi = values((await client.get(url, params=WINDOW)).json())["mdi_share"]
    # covered key processes: OP10 (B1) all window, OP20 (B2) 10-11. EXECUTING: B1 45 + 60 min,
    # B2 60 min; MDI: B1 6 min
    assert (mdi["numerator"], mdi["denominator"]) == (360, (45 + 60 + 60) * 60)
    assert mdi["value"] == pytest.approx(360 / 9900, abs=1e-4)
    explain = (await client.get(f"{url}/explain", params=WINDOW)).json()
    b1 = {e["equipment"]: e for e in explain["equipment"]}["B1"]["oee"]
    assert (b1["total_count"], b1["scrap_count"]) == (55, 5)
    assert b1["quality"] == pytest.approx(50 / 55, abs=1e-4)


async def test_parts_made_while_offline_before_the_window_are_not_counted_in_it(
    api: tuple[httpx.AsyncClient, dict[str, int]], database_url: str
) -> None:
    """B1 is lost at 09:50 and back at 10:10 with its part counter 50 higher: those parts may
    have been made before 10:00, so the window's baseline is the reading at 10:10 (its birth),
    not the one of 09:30 from before it was lost. Its state samples say nothing else."""
    client, ids = api
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "UPDATE connectivity_session SET offline_at = %s WHERE device_id = 'B1'",
            (T0 - timedelta(minutes=10),),
        )
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) SELECT 'SUP1', 'GW', 'B1', e.id, %s FROM equipment e"
            " WHERE e.code = 'B1'",
            (T0 + timedelta(minutes=10),),
        )
        await conn.execute(
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
            " equipment_id) SELECT 'SUP1', 'GW', 'B1', 'Production/PartCount', 7, e.id"
            " FROM equipment e WHERE e.code = 'B1'"
        )
        for minutes, value in ((-30, 100), (10, 150), (90, 162)):
            await conn.execute(
                "INSERT INTO sample_num (series_id, ts, value) SELECT id, %s, %s FROM series"
                " WHERE device_id = 'B1' AND metric = 'Production/PartCount'",
                (T0 + timedelta(minutes=minutes), value),
            )
        await conn.commit()
    url = f"/api/v1/enterprises/{ids['SUP1']}/indicators/explain"
    explain = (await client.get(url, params=WINDOW)).json()
    b1 = {e["equipment"]: e for e in explain["equipment"]}["B1"]["oee"]
    assert b1["total_count"] == 12  # 162 - 150, not 162 - 100
    # online at the window's start, the 09:30 reading is the baseline
    later = {"from": (T0 - timedelta(minutes=20)).isoformat(), "to": WINDOW["to"]}
    explain = (await client.get(url, params=later)).json()
    b1 = {e["equipment"]: e for e in explain["equipment"]}["B1"]["oee"]
    assert b1["total_count"] == 62


def _newcomer(processes: list[tuple[str, str]], since: datetime | None) -> dict[str, Any]:
    """An enterprise outside every group, key processes (process, machine) all declared NC."""
    enterprise: dict[str, Any] = {
        "code": "NEW",
        "uscc": "91110000MA0000009X",
        "name": "Newcomer",
        "sites": [
            {
                "code": "S",
                "name": "Site",
                "edge_node": "GW",
                "timezone": "UTC",
                "lines": [
                    {
                        "code": "L1",
                        "name": "Line",
                        "processes": [
                            {
                                "code": p,
                                "name": p,
                                "is_key": True,
                                "key_reason": "tolerance",
                                "equipment": [m],
                            }
                            for p, m in processes
                        ],
                    }
                ],
                "equipment": [
                    {"code": m, "name": m, "line": "L1", "control_type": "CNC", "declared_nc": True}
                    for _, m in processes
                ],
            }
        ],
    }
    if since is not None:
        enterprise["since"] = since.isoformat()
    return {"enterprises": [enterprise]}


async def _seed_newcomer(database_url: str) -> int:
    """NEW (see the test below), N1 online and in AUTO from 09:00; NEW's id."""
    since, added = T0 + timedelta(hours=1), T0 + timedelta(minutes=90)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ids = await import_registry(conn, registry_from(_newcomer([("OP10", "N1")], since)))
        await import_registry(
            conn, registry_from(_newcomer([("OP10", "N1"), ("OP20", "N2")], since)), added
        )
        start = T0 - timedelta(hours=1)
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) SELECT 'NEW', 'GW', 'N1', id, %s FROM equipment WHERE code = 'N1'",
            (start,),
        )
        for metric, value in (("State/Mode", "AUTO"), ("State/Execution", "EXECUTING")):
            await conn.execute(
                "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                " equipment_id) SELECT 'NEW', 'GW', 'N1', %s, 12, id FROM equipment"
                " WHERE code = 'N1'",
                (metric,),
            )
            await conn.execute(
                "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, %s FROM series"
                " WHERE device_id = 'N1' AND metric = %s",
                (start, value, metric),
            )
        await conn.commit()
    return ids["NEW"]


async def test_windows_before_the_registry_or_an_entry_existed(database_url: str) -> None:
    """NEW's registry begins at 11:00 (``since``) with OP10 on N1, which has run in AUTO since
    09:00; at 11:30 it adds the key process OP20 on N2 (no telemetry). A window before 11:00 has
    no indicators, with the reason; over 10:00-12:00 only what was registered counts, when it
    was: 10-11 nothing, 11:00-11:30 {OP10} (verified), 11:30-12:00 {OP10, OP20} (OP20
    uncovered). Counts averaged by duration over the two hours: declared 0.25 * 1 + 0.25 * 2
    = 0.75 of 0.75, verified 0.25 * 1 + 0.25 * 1 = 0.5 of 0.75. Before this rule the first
    versions were valid since 1970 and OP20 counted all along: verified 1 of 2."""
    since = T0 + timedelta(hours=1)
    start = T0 - timedelta(hours=1)
    new = await _seed_newcomer(database_url)
    app = create_app(secured(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        client.headers.update(await person(client, database_url, "root", "platform_admin"))
        url = f"/api/v1/enterprises/{new}/indicators"
        before = {"from": start.isoformat(), "to": since.isoformat()}
        r = await client.get(url, params=before)
        assert r.status_code == 200, r.text
        for indicator in r.json()["indicators"]:
            assert indicator["value"] is None, indicator
            assert indicator["reason"] == (
                "before_registry: the enterprise's registry begins at 2026-10-05T11:00:00+00:00"
            )
        r = await client.get(url, params=WINDOW)
        assert r.status_code == 200, r.text
        v = values(r.json())
        declared, verified = v["nc_rate_declared"], v["nc_rate_verified"]
        assert (declared["numerator"], declared["denominator"]) == (0.75, 0.75)
        assert (verified["numerator"], verified["denominator"]) == (0.5, 0.75)
        assert verified["value"] == pytest.approx(0.6667, abs=1e-4)
        assert "reason" not in verified


async def test_a_corrected_device_clock_is_shown_with_its_jumps(database_url: str) -> None:
    """N1's gateway published the corrections of its clock (``Clock/Offset``): 90 s at 09:30
    (before the window), 91 s at 11:40, then 0 at 11:50 (set right by hand: a jump of 91 s;
    90 -> 91 s is a drift). Over 10:00-12:00 its explanation shows 0 s in force at the end, 91 s
    at the largest, one jump; N2 (no corrections) shows none."""
    new = await _seed_newcomer(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
            " equipment_id) SELECT 'NEW', 'GW', 'N1', 'Clock/Offset', 4, id FROM equipment"
            " WHERE code = 'N1'"
        )
        for minutes, offset in ((-30, 90_000), (100, 91_000), (110, 0)):
            await conn.execute(
                "INSERT INTO sample_num (series_id, ts, value) SELECT id, %s, %s FROM series"
                " WHERE device_id = 'N1' AND metric = 'Clock/Offset'",
                (T0 + timedelta(minutes=minutes), offset),
            )
        await conn.commit()
    app = create_app(secured(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        client.headers.update(await person(client, database_url, "root", "platform_admin"))
        r = await client.get(f"/api/v1/enterprises/{new}/indicators/explain", params=WINDOW)
        assert r.status_code == 200, r.text
        machines = {e["equipment"]: e for e in r.json()["equipment"]}
        n1, n2 = machines["N1"], machines["N2"]
        assert (n1["clock_offset_s"], n1["clock_largest_offset_s"], n1["clock_jumps"]) == (
            0.0,
            91.0,
            1,
        )
        assert (n2["clock_offset_s"], n2["clock_largest_offset_s"], n2["clock_jumps"]) == (
            None,
            None,
            0,
        )


async def test_oee_of_the_enterprise_by_day(
    api: tuple[httpx.AsyncClient, dict[str, int]], database_url: str
) -> None:
    """The explanation's OEE of the whole enterprise and, with ``bucket``, of each local day
    (:func:`seed_production`: planned time is the whole day, the site's calendar being all
    day)."""
    client, ids = api
    await seed_production(database_url)
    url = f"/api/v1/enterprises/{ids['LEAD']}/indicators/explain"
    r = await client.get(url, params={**DAYS, "bucket": "day"})
    assert r.status_code == 200, r.text
    body = r.json()
    # the window: 27 h planned, 24 h EXECUTING, 2,100 parts of 30 s, 48 scrapped
    whole = body["oee"]
    assert (whole["planned_s"], whole["run_s"]) == (27 * 3600, 24 * 3600)
    assert (whole["total_count"], whole["scrap_count"]) == (2100, 48)
    assert whole["availability"] == pytest.approx(24 / 27, abs=1e-4)
    assert whole["performance"] == pytest.approx(30 * 2100 / (24 * 3600), abs=1e-4)
    assert whole["quality"] == pytest.approx(2052 / 2100, abs=1e-4)
    assert whole["oee"] == pytest.approx(30 * 2052 / (27 * 3600), abs=1e-4)
    first, second = body["buckets"]
    assert (first["from"], first["to"]) == ("2026-10-05T09:00:00Z", "2026-10-06T00:00:00Z")
    assert (second["from"], second["to"]) == ("2026-10-06T00:00:00Z", "2026-10-06T12:00:00Z")
    # day one: 15 h executing of 15 planned, 1,200 parts (36,000 s of ideal work), 30 scrapped
    assert (first["oee"]["total_count"], first["oee"]["scrap_count"]) == (1200, 30)
    assert first["oee"]["availability"] == 1.0
    assert first["oee"]["performance"] == pytest.approx(36000 / 54000, abs=1e-4)
    assert first["oee"]["quality"] == pytest.approx(0.975, abs=1e-4)
    assert first["oee"]["oee"] == pytest.approx(0.65, abs=1e-4)
    # day two: idle 06:00-09:00, so 9 h executing of 12; 900 parts from the 1,200 read at
    # 21:00 the day before (the machine was online at midnight), 18 scrapped
    assert (second["oee"]["total_count"], second["oee"]["scrap_count"]) == (900, 18)
    assert second["oee"]["availability"] == 0.75
    assert second["oee"]["performance"] == pytest.approx(27000 / 32400, abs=1e-4)
    assert second["oee"]["quality"] == pytest.approx(0.98, abs=1e-4)
    assert second["oee"]["oee"] == pytest.approx(0.6125, abs=1e-4)
    # one line, one machine: the line's OEE is the enterprise's, keyed site/line (though S has
    # the enterprise's only L1), and names its site
    assert second["lines"] == {"S/L1": {**second["oee"], "site": "S", "line": "L1"}}
    without = (await client.get(url, params=DAYS)).json()
    assert "buckets" not in without and without["oee"] == whole
