"""The whole path over TLS with a login per gateway (issue 12): simulated OPC UA machines of two
sites -> two edge gateways, each with the credential ``gateway provision`` issued for it ->
a Mosquitto with the password file, ACL and certificates ``broker init`` made, TLS listeners
only -> the ingest with the platform's host login -> PostgreSQL. Data from both gateways
arrives; a gateway that publishes for the other site is refused by the broker, and nothing of
it is stored."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from plantwire_bus.mosquitto import free_port
from plantwire_bus.mqtt import MqttClient, MqttError, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_edge.config import EdgeConfig
from plantwire_edge.gateway import Gateway
from plantwire_platform.gateways.broker_files import gateway_username
from plantwire_platform.gateways.provisioning import (
    BrokerDir,
    client_url,
    init_broker,
    provision_gateway,
)
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.settings import PlatformSettings
from plantwire_sim.gateway_config import gateway_config
from plantwire_sim.opcua_server import run_fleet
from plantwire_sim.scenario import parse_scenario
from tests.platform.gateways.test_broker_access import start_broker

pytestmark = pytest.mark.e2e

SCENARIO = """
name = "e2e-tls"
seed = 12

[[enterprises]]
code = "T{token}"
uscc = "91110000MA0000000X"
name = "Two Sites Works"
{sites}
"""
SITE = """
[[enterprises.sites]]
code = "S{n}"
name = "Site {n}"
edge_node = "GW-{n}"

[[enterprises.sites.lines]]
code = "L{n}"
name = "Line {n}"
processes = [
  {{ code = "OP{n}0", name = "Turning", is_key = true, key_reason = "fit", equipment = ["M-{n}"] }},
]

[[enterprises.sites.equipment]]
code = "M-{n}"
name = "Lathe {n}"
line = "L{n}"
control_type = "CNC"
declared_nc = true
spindle_rpm = 3000
program = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 0.9 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 0.4 }},
]
"""


async def samples_by_node(database_url: str, group: str) -> dict[tuple[str, str], int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT s.edge_node_id, s.device_id, count(t.*) FROM series s"
            " LEFT JOIN sample_num t ON t.series_id = s.id WHERE s.group_id = %s"
            " GROUP BY 1, 2",
            (group,),
        )
        return {(r[0], r[1]): int(r[2]) for r in await cur.fetchall()}


async def dead_letters(database_url: str) -> list[tuple[str, str]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT topic, reason FROM dead_letter")
        return [(str(r[0]), str(r[1])) for r in await cur.fetchall()]


async def test_two_gateways_over_tls_each_in_its_own_namespace(
    database_url: str, tmp_path: Path, unique: str
) -> None:
    sites = "".join(SITE.format(n=n) for n in (1, 2))
    scenario = parse_scenario(SCENARIO.format(token=unique, sites=sites))
    enterprise = scenario.enterprises[0]
    group = enterprise.code
    broker = BrokerDir(tmp_path / "broker")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await import_registry(conn, registry_from(scenario.registry()))
        host_password = await init_broker(conn, broker, "plantwire-host", ("127.0.0.1",))
        passwords = {}
        for site in enterprise.sites:
            _, passwords[site.edge_node], _ = await provision_gateway(
                conn, broker, group, site.edge_node
            )
    tls_port = free_port()
    process = start_broker(broker, tls_port, free_port())  # TLS listeners only

    def url(user: str, password: str) -> str:
        return client_url(f"mqtts://127.0.0.1:{tls_port}", user, password, broker.ca.cert)

    host_id = f"tls-{unique}"
    settings = PlatformSettings(
        database_url=database_url,
        mqtt_url=url("plantwire-host", host_password),
        host_id=host_id,
        batch_age_ms=50,
    )
    ingest = IngestWorker(settings)
    stop_ingest, stop_edge = asyncio.Event(), asyncio.Event()
    try:
        async with run_fleet(scenario, base_port=0) as fleet, asyncio.TaskGroup() as tg:
            tg.create_task(ingest.run(stop_ingest))
            await asyncio.wait_for(ingest.ready.wait(), 30)
            gateways: list[Gateway] = []
            for site in enterprise.sites:
                login = url(gateway_username(group, site.edge_node), passwords[site.edge_node])
                assert parse_mqtt_url(login).tls
                config: dict[str, Any] = gateway_config(
                    enterprise, site, fleet.endpoints, login, host_id
                )
                gateways.append(Gateway(EdgeConfig.model_validate(config)))
            edges = [tg.create_task(g.run(stop_edge)) for g in gateways]
            try:
                # gateway 1's login speaking for site 2: the broker refuses it
                rogue = url(gateway_username(group, "GW-1"), passwords["GW-1"])
                async with MqttClient(parse_mqtt_url(rogue), f"rogue-{unique}") as client:
                    birth = Payload(timestamp=int(time.time() * 1000), seq=1, metrics=(
                        Metric(name="Spindle/Speed", alias=1, datatype=DataType.Double,
                               value=9999.0, timestamp=int(time.time() * 1000)),))  # fmt: skip
                    for topic in (
                        f"spBv1.0/{group}/DBIRTH/GW-2/FAKE",
                        f"spBv1.0/{group}/DDATA/GW-2/M-2",
                        f"spBv1.0/{group}/NBIRTH/GW-2",
                    ):
                        with pytest.raises(MqttError, match="Not authorized"):
                            await client.publish(topic, encode_payload(birth))
                deadline = time.monotonic() + 60
                while True:
                    counts = await samples_by_node(database_url, group)
                    if all(counts.get((f"GW-{n}", f"M-{n}"), 0) > 10 for n in (1, 2)):
                        break
                    assert time.monotonic() < deadline, f"data of both gateways: {counts}"
                    await asyncio.sleep(0.3)
            finally:
                stop_edge.set()
                await asyncio.gather(*edges, return_exceptions=True)
                stop_ingest.set()
    finally:
        process.stop()
    assert {node for node, _ in counts} == {"GW-1", "GW-2"}
    assert ("GW-2", "FAKE") not in counts  # no series from the refused birth
    assert all(g.node.stats.connect_failures == 0 for g in gateways)
    assert [d for d in await dead_letters(database_url) if "FAKE" in d[0]] == []
