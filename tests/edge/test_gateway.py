"""The gateway against a real OPC UA simulator and a real Mosquitto; what it publishes is
decoded by pysparkplug, an independent Sparkplug B implementation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pysparkplug as sp
import pytest

from plantwire_bus.mqtt import Message, MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.topics import encode_state, state_topic
from plantwire_edge.config import EdgeConfig
from plantwire_edge.gateway import Gateway
from plantwire_sim.gateway_config import gateway_config
from plantwire_sim.opcua_server import Fleet, run_fleet
from plantwire_sim.scenario import parse_scenario

SCENARIO = """
name = "edge"
seed = 3
[[enterprises]]
code = "EDGE{token}"
uscc = "91110000MA0000000X"
name = "Edge Test Works"
[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "GW1"
[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"
[[enterprises.sites.equipment]]
code = "M1"
name = "Lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 2000
program = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 0.8 }},
  {{ mode = "MANUAL", execution = "IDLE", seconds = 0.5 }},
]
"""


@dataclass
class Probe:
    """Collects everything published under the test's Sparkplug group."""

    client: MqttClient
    messages: list[Message]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 15) -> list[Message]:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if m.topic.split("/")[2] == kind]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"no {kind} within {timeout} s"
            await asyncio.sleep(0.05)


@pytest.fixture
async def probe(mqtt_url: str, unique: str) -> AsyncIterator[Probe]:
    client = MqttClient(parse_mqtt_url(mqtt_url), f"probe-{unique}")
    await client.connect()
    await client.subscribe(f"spBv1.0/EDGE{unique}/#")
    received: list[Message] = []

    async def collect() -> None:
        async for message in client.messages():
            received.append(message)

    task = asyncio.create_task(collect())
    yield Probe(client, received)
    task.cancel()
    await client.disconnect()


def config(fleet: Fleet, token: str, mqtt_url: str, host_id: str | None) -> EdgeConfig:
    scenario = parse_scenario(SCENARIO.format(token=token))
    enterprise = scenario.enterprises[0]
    return EdgeConfig.model_validate(
        gateway_config(enterprise, enterprise.sites[0], fleet.endpoints, mqtt_url, host_id)
    )


async def test_sparkplug_lifecycle_decoded_independently(
    probe: Probe, mqtt_url: str, unique: str
) -> None:
    scenario = parse_scenario(SCENARIO.format(token=unique))
    stop = asyncio.Event()
    async with run_fleet(scenario, base_port=0) as fleet:
        gateway = Gateway(config(fleet, unique, mqtt_url, None))
        task = asyncio.create_task(gateway.run(stop))
        await probe.wait_for("DDATA", 3)
    # the fleet is gone: the gateway reports the device dead
    ddeath = (await probe.wait_for("DDEATH"))[0]
    stop.set()
    await asyncio.wait_for(task, 15)
    ndeath = (await probe.wait_for("NDEATH"))[0]

    assert all(m.qos == 1 for m in probe.messages)
    nbirth_msg = (await probe.wait_for("NBIRTH"))[0]
    nbirth = sp.NBirth.decode(nbirth_msg.payload)
    assert nbirth.seq == 0
    bd_seq = {m.name: m.value for m in nbirth.metrics}["bdSeq"]
    assert sp.NDeath.decode(ndeath.payload).bd_seq_metric.value == bd_seq

    dbirth_msg = (await probe.wait_for("DBIRTH"))[0]
    assert dbirth_msg.topic == f"spBv1.0/EDGE{unique}/DBIRTH/GW1/M1"
    dbirth = sp.DBirth.decode(dbirth_msg.payload)
    by_name = {m.name: m for m in dbirth.metrics}
    assert set(by_name) == {
        "State/Mode",
        "State/Execution",
        "Spindle/Speed",
        "Production/PartCount",
        "Production/ScrapCount",
    }
    assert by_name["State/Mode"].datatype == sp.DataType.STRING
    assert by_name["Spindle/Speed"].datatype == sp.DataType.DOUBLE
    assert by_name["Production/PartCount"].datatype == sp.DataType.UINT32
    assert len({m.alias for m in dbirth.metrics}) == 5  # every metric has its own alias

    # data messages: aliases only, resolved against the birth, sequence numbers contiguous
    seqs = [sp.NBirth.decode(nbirth_msg.payload).seq]
    order = [m for m in probe.messages if m.topic.split("/")[2] in ("DBIRTH", "DDATA", "DDEATH")]
    for message in order:
        kind = message.topic.split("/")[2]
        if kind == "DBIRTH":
            seqs.append(sp.DBirth.decode(message.payload).seq)
        elif kind == "DDEATH":
            seqs.append(sp.DDeath.decode(message.payload).seq)
        else:
            data = sp.DData.decode(message.payload, birth=dbirth)
            seqs.append(data.seq)
            assert all(m.name in by_name for m in data.metrics)
            modes = [m.value for m in data.metrics if m.name == "State/Mode"]
            assert set(modes) <= {"AUTO", "MANUAL"}
    assert seqs == list(range(len(seqs)))
    assert sp.DDeath.decode(ddeath.payload).seq == seqs[-1]


async def test_waits_for_primary_host_then_rebirths_on_command(
    probe: Probe, mqtt_url: str, unique: str
) -> None:
    scenario = parse_scenario(SCENARIO.format(token=unique))
    host_id = f"host-{unique}"
    stop = asyncio.Event()
    async with run_fleet(scenario, base_port=0) as fleet:
        gateway = Gateway(config(fleet, unique, mqtt_url, host_id))
        task = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.adapters[0].connected.wait(), 10)
        subscribed_ms = time.time_ns() // 1_000_000 + 200
        await asyncio.sleep(3)
        assert probe.messages == []  # no host online: hold everything
        host_online_ms = time.time_ns() // 1_000_000
        await probe.client.publish(state_topic(host_id), encode_state(True, 1), retain=True)
        await probe.wait_for("DBIRTH")
        await probe.wait_for("DDATA")
        rebirth = Payload(
            metrics=(Metric(name="Node Control/Rebirth", datatype=DataType.Boolean, value=True),)
        )
        await probe.client.publish(f"spBv1.0/EDGE{unique}/NCMD/GW1", encode_payload(rebirth))
        births = await probe.wait_for("NBIRTH", 2)
        await probe.wait_for("DBIRTH", 2)
        assert sp.NBirth.decode(births[1].payload).seq == 0
        stop.set()
        await asyncio.wait_for(task, 15)
        held = {
            r.ts_ms
            for r in fleet.truth.values("M1", "SpindleSpeed")
            if subscribed_ms < r.ts_ms < host_online_ms
        }
    await probe.client.publish(state_topic(host_id), b"", retain=True)  # clear retained STATE
    # what the simulator wrote while the host was away was held and sent afterwards
    dbirth = sp.DBirth.decode((await probe.wait_for("DBIRTH"))[0].payload)
    sent = {m.timestamp for m in dbirth.metrics if m.name == "Spindle/Speed"}
    for message in await probe.wait_for("DDATA"):
        data = sp.DData.decode(message.payload, birth=dbirth)
        sent |= {m.timestamp for m in data.metrics if m.name == "Spindle/Speed"}
    assert len(held) >= 2
    assert held <= sent
