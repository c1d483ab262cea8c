"""Sparkplug 3.0 requirements of an edge node (issue 12), each test named after its id, the
messages read with the specification's own protobuf schema (not plantwire's codec)."""

from __future__ import annotations

import asyncio
import time

from plantwire_bus.mosquitto import MosquittoProcess, start_mosquitto
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode

INT64 = 4  # Sparkplug B DataType Int64


def node_config(mqtt_url: str, group: str) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "N",
            "mqtt_url": mqtt_url,
            "primary_host_id": "",
            "devices": [
                {
                    "kind": "opcua",
                    "device_id": "M1",
                    "endpoint": "opc.tcp://127.0.0.1:1",
                    "tags": [{"node": "nsu=urn:x;s=a", "metric": "Count"}],
                }
            ],
        }
    )


def bd_seq(payload: bytes) -> tuple[int, int]:
    """(value, datatype) of the bdSeq metric, read with the specification's schema."""
    pb = PbPayload.FromString(payload)
    [metric] = [m for m in pb.metrics if m.name == "bdSeq"]
    return metric.long_value, metric.datatype


async def test_tck_id_topics_nbirth_bdseq_increment_and_datatype_int64(
    private_mosquitto: MosquittoProcess, unique: str
) -> None:
    """tck-id-topics-nbirth-bdseq-increment (start at zero, one up per MQTT CONNECT packet:
    connects the broker never heard of do not count),
    tck-id-message-flow-edge-node-birth-publish-nbirth-payload-bdSeq and
    tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq (INT64, the NBIRTH's
    value the Will's)."""
    broker = private_mosquitto
    group = f"B{unique}"
    node = EdgeNode(node_config(broker.url, group))
    broker.stop()  # the gateway starts while the broker is away: TCP connects refused
    halt = asyncio.Event()
    uplink = asyncio.create_task(node.uplink.run(halt))
    deadline = time.monotonic() + 30
    while node.uplink.stats.connect_failures < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    restarted = start_mosquitto(broker.log_path.parent, port=broker.port)
    try:
        async with MqttClient(parse_mqtt_url(restarted.url), f"probe-{unique}") as probe:
            await probe.subscribe(f"spBv1.0/{group}/+/N")
            births: list[tuple[int, int]] = []
            deadline = time.monotonic() + 30
            while len(births) < 1:
                message = await asyncio.wait_for(probe.next_message(), deadline - time.monotonic())
                if "/NBIRTH/" in message.topic:
                    births.append(bd_seq(message.payload))
            assert births == [(0, INT64)]  # the first CONNECT packet: 0, not the attempts
            will = node.uplink.death_payload()  # what the CONNECT carried as its Will
            assert bd_seq(will) == (0, INT64)
            # a new connection: one up, in the Will (NDEATH) and the NBIRTH alike
            restarted.kill()
            restarted = start_mosquitto(broker.log_path.parent, port=broker.port)
            deadline = time.monotonic() + 40
            while True:
                message = await asyncio.wait_for(probe.next_message(), deadline - time.monotonic())
                if "/NBIRTH/" in message.topic:
                    assert bd_seq(message.payload) == (1, INT64)
                    break
            assert bd_seq(node.uplink.death_payload()) == (1, INT64)
    finally:
        halt.set()
        await asyncio.wait_for(uplink, 15)
        restarted.stop()
