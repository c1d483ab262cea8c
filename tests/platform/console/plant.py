"""A running plant for the console's browser tests: simulated OPC UA machines -> edge gateway
-> Mosquitto -> ingest -> PostgreSQL -> the platform's HTTP server (console included), as in
``tests/e2e``. The simulator's ground truth says when each machine changed state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg

from plantwire_bus.mosquitto import free_port
from plantwire_edge.config import EdgeConfig
from plantwire_edge.gateway import Gateway
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_sim.gateway_config import gateway_config
from plantwire_sim.opcua_server import Fleet, run_fleet
from plantwire_sim.scenario import Scenario, parse_scenario
from tests.platform.console.browser import serving
from tests.platform.identities import secured

SCENARIO = """
name = "console"
seed = 7

[[enterprises]]
code = "CON{token}"
uscc = "91320000MA1C0N5A1X"
name = "Console Test Works"

[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "GW-{token}"
timezone = "Asia/Shanghai"

[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"

[[enterprises.sites.lines.processes]]
code = "OP10"
name = "Turning"
is_key = true
key_reason = "bore tolerance"
equipment = ["LATHE-1"]

[[enterprises.sites.lines.processes]]
code = "OP20"
name = "Drilling"
is_key = true
key_reason = "hole position"
equipment = ["DRILL-2"]

[[enterprises.sites.equipment]]
code = "LATHE-1"
name = "Automatic lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 3000
program = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 4.0 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 3.0 }},
]

[[enterprises.sites.equipment]]
code = "DRILL-2"
name = "Drill declared NC, run by hand"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 1200
program = [
  {{ mode = "MANUAL", execution = "EXECUTING", seconds = 5.0 }},
  {{ mode = "SETUP", execution = "IDLE", seconds = 2.0 }},
]
"""


@dataclass
class Plant:
    scenario: Scenario
    fleet: Fleet
    base: str
    database_url: str
    enterprise_id: int
    gateway: Gateway


@contextlib.asynccontextmanager
async def running_plant(database_url: str, mqtt_url: str, unique: str) -> AsyncIterator[Plant]:
    """The plant of :data:`SCENARIO`, running until the block ends."""
    scenario = parse_scenario(SCENARIO.format(token=unique))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ids = await import_registry(conn, registry_from(scenario.registry()))
    settings = secured(
        database_url, mqtt_url=mqtt_url, host_id=f"h{unique}", api_port=free_port(), batch_age_ms=50
    )
    stop_ingest, stop_edge = asyncio.Event(), asyncio.Event()
    ingest = IngestWorker(settings)
    async with run_fleet(scenario, base_port=0) as fleet, asyncio.TaskGroup() as tg:
        ingest_task = tg.create_task(ingest.run(stop_ingest))
        try:
            await asyncio.wait_for(ingest.ready.wait(), 20)
            enterprise, site = scenario.enterprises[0], scenario.enterprises[0].sites[0]
            config = EdgeConfig.model_validate(
                gateway_config(enterprise, site, fleet.endpoints, mqtt_url, settings.host_id)
            )
            gateway = Gateway(config)
            edge_task = tg.create_task(gateway.run(stop_edge))
            try:
                async with serving(settings) as base:
                    await born(gateway, 2)
                    yield Plant(scenario, fleet, base, database_url, ids[enterprise.code], gateway)
            finally:
                stop_edge.set()
                await edge_task
        finally:
            stop_ingest.set()
            await ingest_task


async def born(gateway: Gateway, devices: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while sum(a.connected.is_set() for a in gateway.adapters) < devices:
        assert time.monotonic() < deadline, "devices did not connect"
        await asyncio.sleep(0.05)
    while gateway.node.stats.births == 0:
        assert time.monotonic() < deadline, "no births published"
        await asyncio.sleep(0.05)
