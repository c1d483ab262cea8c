"""Lines of different sites are different lines (real PostgreSQL, through the HTTP API): a line's
code is unique only in its site, so an enterprise whose sites S1 and S2 both have a line L1 has
two L1 figures, each matching a hand computation, and every line and machine of the
explanation names its site.

The enterprise TWO, window 10:00-12:00 UTC, both sites planned round the clock (7,200 s each
machine), every machine online from 09:00 and in AUTO:

- S1/M1 on L1: EXECUTING all along; ideal cycle 30 s; part counter 0 at 09:30 (the baseline:
  online at the window's start), 200 at 11:50; scrap 0 at 09:30, 10 at 11:30.
  A = 7,200 / 7,200 = 1, P = 30 x 200 / 7,200 = 0.8333, Q = 190 / 200 = 0.95.
- S2/M1 on L1 (the same codes at another site): EXECUTING until 11:00, then IDLE; ideal cycle
  40 s; parts 0 at 09:30, 60 at 11:00, no scrap counter.
  A = 3,600 / 7,200 = 0.5, P = 40 x 60 / 3,600 = 0.6667, Q = 1.
- S2/M2 on L2: EXECUTING all along; ideal cycle 100 s; parts 0 at 09:30, 36 at 11:00.
  A = 1, P = 100 x 36 / 7,200 = 0.5, Q = 1.

Pooled under the one key "L1" (the mistake this guards against) L1 would read A = 0.75,
P = 8,400 / 10,800 = 0.7778, 260 parts. Every line is keyed ``site/line`` (S2's L2 as
"S2/L2", though it is the only L2): a line's key does not depend on the other sites' lines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_platform.indicators.formulas import oee
from plantwire_platform.indicators.report import line_bodies
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from tests.platform.identities import person, secured

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=2)).isoformat()}
BEFORE = T0 - timedelta(hours=1)  # 09:00: online, AUTO, first states


def _machine(code: str, line: str, ideal_cycle_s: float) -> dict[str, Any]:
    return {
        "code": code,
        "name": code,
        "line": line,
        "control_type": "CNC",
        "declared_nc": True,
        "ideal_cycle_s": ideal_cycle_s,
    }


def _site(code: str, lines: list[str], machines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "code": code,
        "name": code,
        "edge_node": f"GW{code}",
        "timezone": "UTC",
        "lines": [
            {
                "code": line,
                "name": line,
                "processes": [
                    {
                        "code": "OP10",
                        "name": "OP10",
                        "is_key": True,
                        "key_reason": "tolerance",
                        "equipment": [m["code"] for m in machines if m["line"] == line],
                    }
                ],
            }
            for line in lines
        ],
        "equipment": machines,
    }


REGISTRY = {
    "enterprises": [
        {
            "code": "TWO",
            "uscc": "91110000MA0000007X",
            "name": "Two sites",
            "since": (BEFORE - timedelta(hours=1)).isoformat(),
            "sites": [
                _site("S1", ["L1"], [_machine("M1", "L1", 30)]),
                _site("S2", ["L1", "L2"], [_machine("M1", "L1", 40), _machine("M2", "L2", 100)]),
            ],
        }
    ]
}

# (site, machine): execution changes (minutes after 09:00) and counter readings
EXECUTION = {
    ("S1", "M1"): [(0, "EXECUTING")],
    ("S2", "M1"): [(0, "EXECUTING"), (120, "IDLE")],
    ("S2", "M2"): [(0, "EXECUTING")],
}
COUNTERS = {
    ("S1", "M1"): {
        "Production/PartCount": [(30, 0), (170, 200)],
        "Production/ScrapCount": [(30, 0), (150, 10)],
    },
    ("S2", "M1"): {"Production/PartCount": [(30, 0), (120, 60)]},
    ("S2", "M2"): {"Production/PartCount": [(30, 0), (120, 36)]},
}


async def _series(
    conn: psycopg.AsyncConnection[Any], site: str, code: str, metric: str, datatype: int
) -> int:
    """A series of the machine ``code`` of ``site`` (its gateway, its device id)."""
    cur = await conn.execute(
        "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype, equipment_id)"
        " SELECT 'TWO', s.edge_node_id, e.code, %s, %s, e.id FROM equipment e"
        " JOIN site s ON s.id = e.site_id WHERE s.code = %s AND e.code = %s RETURNING id",
        (metric, datatype, site, code),
    )
    (found,) = await cur.fetchall()
    return int(found[0])


async def seed(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ids = await import_registry(conn, registry_from(REGISTRY))
        for (site, code), changes in EXECUTION.items():
            await conn.execute(
                "INSERT INTO connectivity_session (group_id, edge_node_id, device_id,"
                " equipment_id, online_at) SELECT 'TWO', s.edge_node_id, e.code, e.id, %s"
                " FROM equipment e JOIN site s ON s.id = e.site_id"
                " WHERE s.code = %s AND e.code = %s",
                (BEFORE, site, code),
            )
            mode = await _series(conn, site, code, "State/Mode", 12)
            await conn.execute("INSERT INTO sample_text VALUES (%s, %s, 'AUTO')", (mode, BEFORE))
            execution = await _series(conn, site, code, "State/Execution", 12)
            for minutes, value in changes:
                await conn.execute(
                    "INSERT INTO sample_text VALUES (%s, %s, %s)",
                    (execution, BEFORE + timedelta(minutes=minutes), value),
                )
            for metric, readings in COUNTERS[(site, code)].items():
                series = await _series(conn, site, code, metric, 7)
                for minutes, count in readings:
                    await conn.execute(
                        "INSERT INTO sample_num (series_id, ts, value) VALUES (%s, %s, %s)",
                        (series, BEFORE + timedelta(minutes=minutes), count),
                    )
        await conn.commit()
        return ids["TWO"]


def _figures(body: dict[str, Any]) -> dict[str, float | None]:
    return {k: body[k] for k in ("availability", "performance", "quality", "total_count")}


async def test_two_sites_each_with_a_line_l1_have_two_figures(database_url: str) -> None:
    enterprise = await seed(database_url)
    app = create_app(secured(database_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        client.headers.update(await person(client, database_url, "root", "platform_admin"))
        url = f"/api/v1/enterprises/{enterprise}/indicators/explain"
        r = await client.get(url, params=WINDOW)
        assert r.status_code == 200, r.text
        explain = r.json()
        lines = explain["lines"]
        # every line keyed site/line: S2's L2 too, though no other site has an L2 (its key
        # must not change when one adds an L2)
        assert list(lines) == ["S1/L1", "S2/L1", "S2/L2"]
        assert [(lines[k]["site"], lines[k]["line"]) for k in lines] == [
            ("S1", "L1"),
            ("S2", "L1"),
            ("S2", "L2"),
        ]
        assert _figures(lines["S1/L1"]) == pytest.approx(
            {"availability": 1.0, "performance": 0.8333, "quality": 0.95, "total_count": 200}
        )
        assert (lines["S1/L1"]["planned_s"], lines["S1/L1"]["run_s"]) == (7200, 7200)
        assert lines["S1/L1"]["scrap_count"] == 10
        assert _figures(lines["S2/L1"]) == pytest.approx(
            {"availability": 0.5, "performance": 0.6667, "quality": 1.0, "total_count": 60}
        )
        assert (lines["S2/L1"]["planned_s"], lines["S2/L1"]["run_s"]) == (7200, 3600)
        assert _figures(lines["S2/L2"]) == pytest.approx(
            {"availability": 1.0, "performance": 0.5, "quality": 1.0, "total_count": 36}
        )
        # each machine named with its site: two M1, each with its own figures
        machines = {(e["site"], e["equipment"]): e for e in explain["equipment"]}
        assert sorted(machines) == [("S1", "M1"), ("S2", "M1"), ("S2", "M2")]
        assert (machines[("S1", "M1")]["line"], machines[("S2", "M1")]["line"]) == ("L1", "L1")
        assert machines[("S1", "M1")]["oee"]["total_count"] == 200
        assert machines[("S2", "M1")]["oee"]["run_s"] == 3600
        # the enterprise pools all three: 21,600 s planned, 18,000 s EXECUTING
        assert (explain["oee"]["planned_s"], explain["oee"]["run_s"]) == (21600, 18000)

        # a bucket's lines are keyed and computed alike (one day bucket: the whole window)
        r = await client.get(url, params={**WINDOW, "bucket": "day"})
        assert r.status_code == 200, r.text
        (bucket,) = r.json()["buckets"]
        assert bucket["lines"] == lines


def test_a_lines_key_stays_when_another_site_adds_a_line_of_its_code() -> None:
    """S1's L1 is "S1/L1" before S2 has an L1 and after (it was "L1", then "S1/L1")."""
    s1 = oee(7200, 7200, 200, 10, 30)
    before = line_bodies({("S1", "L1"): s1})
    after = line_bodies({("S1", "L1"): s1, ("S2", "L1"): oee(7200, 3600, 60, 0, 40)})
    assert list(before) == ["S1/L1"] and list(after) == ["S1/L1", "S2/L1"]
    assert after["S1/L1"] == before["S1/L1"]
    assert (after["S2/L1"].site, after["S2/L1"].line, after["S2/L1"].run_s) == ("S2", "L1", 3600)
