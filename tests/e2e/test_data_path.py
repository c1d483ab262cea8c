"""The whole path: simulated OPC UA machines -> edge gateway -> Mosquitto -> ingest ->
PostgreSQL -> HTTP API, checked against the simulator's ground truth."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_bus.mosquitto import free_port
from plantwire_edge.config import EdgeConfig
from plantwire_edge.gateway import Gateway
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import api_server
from plantwire_sim.gateway_config import gateway_config
from plantwire_sim.opcua_server import Fleet, run_fleet
from plantwire_sim.scenario import Scenario, parse_scenario
from plantwire_sim.truth import StateRecord
from tests.platform.identities import person, secured

pytestmark = pytest.mark.e2e

SCENARIO = """
name = "e2e"
seed = 11

[[enterprises]]
code = "E2E{token}"
uscc = "91110000MA0000000X"
name = "End-to-end Test Works"

[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "GW-{token}"

[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"
processes = [
  {{ code = "OP10", name = "Turning", is_key = true, key_reason = "fit", equipment = ["AUTO-1"] }},
  {{ code = "OP20", name = "Drilling", is_key = true, key_reason = "fit", equipment = ["HAND-2"] }},
]

[[enterprises.sites.equipment]]
code = "AUTO-1"
name = "Automatic lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 3000
program = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 1.3 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 0.7 }},
]

[[enterprises.sites.equipment]]
code = "HAND-2"
name = "Drill declared NC, run by hand"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 1200
program = [
  {{ mode = "MANUAL", execution = "EXECUTING", seconds = 1.1 }},
  {{ mode = "SETUP", execution = "IDLE", seconds = 0.6 }},
]
"""

# canonical metric published by the gateway <- native tag of the simulator
NUMERIC = {"Spindle/Speed": "SpindleSpeed", "Production/PartCount": "PartCount"}
STATE = {"State/Mode": "MachineOperationMode", "State/Execution": "ProgramStatus"}


@dataclass
class Plant:
    scenario: Scenario
    fleet: Fleet
    database_url: str
    api: str
    enterprise_id: int
    gateway: Gateway


@pytest.fixture
async def plant(database_url: str, mqtt_url: str, unique: str) -> AsyncIterator[Plant]:
    scenario = parse_scenario(SCENARIO.format(token=unique))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ids = await import_registry(conn, registry_from(scenario.registry()))
    settings = secured(
        database_url,
        mqtt_url=mqtt_url,
        host_id=f"h{unique}",
        api_port=free_port(),
        batch_age_ms=50,
    )
    stop_ingest, stop_edge = asyncio.Event(), asyncio.Event()
    ingest = IngestWorker(settings)
    server = api_server(settings)
    async with run_fleet(scenario, base_port=0) as fleet, asyncio.TaskGroup() as tg:
        tg.create_task(ingest.run(stop_ingest))
        tg.create_task(server.serve())
        await asyncio.wait_for(ingest.ready.wait(), 10)
        enterprise, site = scenario.enterprises[0], scenario.enterprises[0].sites[0]
        config = EdgeConfig.model_validate(
            gateway_config(enterprise, site, fleet.endpoints, mqtt_url, settings.host_id)
        )
        gateway = Gateway(config)
        edge_task = tg.create_task(gateway.run(stop_edge))
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield Plant(
                scenario,
                fleet,
                database_url,
                f"http://127.0.0.1:{settings.api_port}",
                ids[enterprise.code],
                gateway,
            )
        finally:
            stop_edge.set()
            await edge_task
            await asyncio.sleep(0.5)
            stop_ingest.set()
            server.should_exit = True


async def wait_until_born(gateway: Gateway, devices: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sum(a.connected.is_set() for a in gateway.adapters) < devices:
        assert time.monotonic() < deadline, "devices did not connect"
        await asyncio.sleep(0.05)
    while gateway.node.stats.births == 0 or gateway.node.stats.published < devices + 0:
        assert time.monotonic() < deadline, "no births published"
        await asyncio.sleep(0.05)


async def stored(database_url: str) -> list[tuple[str, str, int, Any]]:
    """(device, metric, ts_ms, value) of every stored sample."""
    query = (
        "SELECT s.device_id, s.metric, t.ts, t.value::text, 'num' FROM series s"
        " JOIN sample_num t ON t.series_id = s.id"
        " UNION ALL SELECT s.device_id, s.metric, t.ts, t.value, 'text' FROM series s"
        " JOIN sample_text t ON t.series_id = s.id"
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(query)
        rows = await cur.fetchall()
    out = []
    for device, metric, ts, value, kind in rows:
        ts_ms = round(ts.timestamp() * 1000)
        out.append((device, metric, ts_ms, float(value) if kind == "num" else value))
    return out


def canonical_state_at(states: list[StateRecord], machine: str, ts_ms: int) -> StateRecord:
    current = [s for s in states if s.machine == machine and s.ts_ms <= ts_ms]
    return max(current, key=lambda s: s.ts_ms)


async def test_every_sample_stored_exactly_once(plant: Plant) -> None:
    await wait_until_born(plant.gateway, 2)
    window_start = time.time_ns() // 1_000_000
    await asyncio.sleep(6)
    window_end = time.time_ns() // 1_000_000 - 1000  # leave time for the last batch
    await asyncio.sleep(1.5)

    truth = plant.fleet.truth
    states = truth.states()
    expected: list[tuple[str, str, int, float | str]] = []
    for rec in truth.values():
        if not window_start <= rec.ts_ms <= window_end:
            continue
        for metric, tag in NUMERIC.items():
            if rec.tag == tag:
                expected.append((rec.machine, metric, rec.ts_ms, float(rec.value)))
        # state tags: compare with the canonical state the simulator was in (its own truth),
        # not with the gateway's mapping tables
        state = canonical_state_at(states, rec.machine, rec.ts_ms)
        if rec.tag == STATE["State/Mode"]:
            expected.append((rec.machine, "State/Mode", rec.ts_ms, state.mode.value))
        elif rec.tag == STATE["State/Execution"]:
            expected.append((rec.machine, "State/Execution", rec.ts_ms, state.execution.value))
    assert len(expected) > 30, "the simulator produced too little to compare"

    actual = [
        row for row in await stored(plant.database_url) if window_start <= row[2] <= window_end
    ]
    counts = Counter(actual)
    assert max(counts.values()) == 1  # nothing doubled (also guaranteed by the primary key)
    assert Counter(expected) == counts  # nothing lost, nothing invented


async def test_api_reports_declared_and_verified_rates(plant: Plant, database_url: str) -> None:
    await wait_until_born(plant.gateway, 2)
    start = datetime.now(UTC)
    await asyncio.sleep(7)
    async with httpx.AsyncClient(base_url=plant.api, timeout=10) as http:
        http.headers.update(await person(http, database_url, "root", "platform_admin"))
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        listed_response = await http.get("/api/v1/enterprises")
        assert listed_response.status_code == 200, listed_response.text
        listed = listed_response.json()
        assert [e["id"] for e in listed] == [plant.enterprise_id]
        r = await http.get(
            f"/api/v1/enterprises/{plant.enterprise_id}/indicators",
            params={"from": start.isoformat()},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        explain = await http.get(
            f"/api/v1/enterprises/{plant.enterprise_id}/indicators/explain",
            params={"from": start.isoformat()},
        )
        assert explain.status_code == 200, explain.text
        missing = await http.get("/api/v1/enterprises/999999/indicators")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    rates = {i["name"]: i for i in body["indicators"]}
    # hand-computed from the scenario: both key processes run on equipment declared NC;
    # only AUTO-1 runs automatically, HAND-2 never runs in AUTO
    assert (rates["nc_rate_declared"]["numerator"], rates["nc_rate_declared"]["denominator"]) == (
        2,
        2,
    )
    assert (rates["nc_rate_verified"]["numerator"], rates["nc_rate_verified"]["denominator"]) == (
        1,
        2,
    )
    assert rates["nc_rate_verified"]["parameters"] == {"coverage_min": 0.9, "auto_share_min": 0.8}
    assert rates["networking_rate"]["value"] == 1.0
    (segment,) = explain.json()["segments"]  # no registry change in the window
    verdicts = {p["process"]: p for p in segment["key_processes"]}
    assert verdicts["OP10"]["verified_nc"] and verdicts["OP10"]["auto_share"] == 1.0
    assert not verdicts["OP20"]["verified_nc"] and verdicts["OP20"]["auto_share"] == 0.0
    assert "AUTO 0% of EXECUTING time < 80%" in verdicts["OP20"]["reason"]
