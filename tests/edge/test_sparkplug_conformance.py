"""Sparkplug 3.0 requirements of an edge node (issue 12), each test named after its id, the
messages read with the specification's own protobuf schema (not plantwire's codec)."""

from __future__ import annotations

import asyncio
import time

import pytest

from plantwire_bus.mosquitto import MosquittoProcess, start_mosquitto
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_bus.topics import encode_state, state_topic
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode

from ..mqtt_tap import CONNECT, mqtt_tap

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


@pytest.mark.sparkplug(
    "tck-id-topics-nbirth-bdseq-increment",
    "tck-id-message-flow-edge-node-birth-publish-nbirth-payload-bdSeq",
    "tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq",
)
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
            # the session ended (NDEATH) and a new connection made: one up, in its Will and
            # NBIRTH alike
            node.uplink.host_gone.set()
            seen: list[tuple[str, tuple[int, int]]] = []
            deadline = time.monotonic() + 30
            while len(seen) < 2:
                message = await asyncio.wait_for(probe.next_message(), deadline - time.monotonic())
                seen.append((message.topic.split("/")[2], bd_seq(message.payload)))
            assert seen == [("NDEATH", (0, INT64)), ("NBIRTH", (1, INT64))]
            assert bd_seq(node.uplink.death_payload()) == (1, INT64)
    finally:
        halt.set()
        await asyncio.wait_for(uplink, 15)
        restarted.stop()


@pytest.mark.sparkplug(
    "tck-id-operational-behavior-edge-node-termination-host-offline-timestamp",
    "tck-id-operational-behavior-edge-node-termination-host-offline-reconnect",
    "tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp",
    "tck-id-message-flow-edge-node-birth-publish-phid-offline",
)
async def test_tck_id_operational_behavior_edge_node_termination_host_offline(
    mqtt_url: str, unique: str
) -> None:
    """With a primary host: an offline STATE at least as new as the last online one ends the
    session (NDEATH, disconnect, connect again and wait)
    (tck-id-operational-behavior-edge-node-termination-host-offline); an older one is ignored
    (...-termination-host-offline-timestamp); and an online STATE older than the last STATE
    does not bring the host back
    (tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp)."""
    group, host = f"S{unique}", f"H{unique}"
    config = node_config(mqtt_url, group).model_copy(update={"primary_host_id": host})
    node = EdgeNode(config)
    state = state_topic(host)
    halt = asyncio.Event()
    async with MqttClient(parse_mqtt_url(mqtt_url), f"host-{unique}") as probe:
        await probe.subscribe(f"spBv1.0/{group}/+/N")

        async def kinds(seconds: float) -> list[tuple[str, int]]:
            out = []
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    message = await asyncio.wait_for(probe.next_message(), left)
                except TimeoutError:
                    break
                out.append((message.topic.split("/")[2], bd_seq(message.payload)[0]))
            return out

        await probe.publish(state, encode_state(True, 1_000), retain=True)
        uplink = asyncio.create_task(node.uplink.run(halt))
        try:
            assert await kinds(3) == [("NBIRTH", 0)]
            await probe.publish(state, encode_state(False, 999), retain=True)  # older: ignored
            assert await kinds(1.5) == []
            assert node.host_online
            await probe.publish(state, encode_state(False, 1_000), retain=True)  # valid
            assert await kinds(3) == [("NDEATH", 0)]  # and a new connection (bdSeq 1) waits
            await probe.publish(state, encode_state(True, 900), retain=True)  # stale online
            assert await kinds(1.5) == []
            await probe.publish(state, encode_state(True, 2_000), retain=True)
            assert await kinds(3) == [("NBIRTH", 1)]
        finally:
            halt.set()
            await asyncio.wait_for(uplink, 15)
            await probe.publish(state, b"", retain=True)  # no retained STATE left behind


@pytest.mark.sparkplug(
    "tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq",
    "tck-id-topics-nbirth-bdseq-increment",
    "tck-id-topics-nbirth-bdseq-matching",
)
async def test_every_connect_packet_carries_the_next_bdseq(
    private_mosquitto: MosquittoProcess, unique: str
) -> None:
    """The broker dies under a connected node and comes back: every CONNECT packet the node
    sends meanwhile (read off the wire) carries a Will with the next bdSeq, none repeats one
    (an automatic reconnect of the MQTT client would), and the NBIRTH after the outage has the
    bdSeq of the CONNECT of its connection."""
    broker = private_mosquitto
    group = f"W{unique}"
    async with mqtt_tap(broker.url) as tap:
        node = EdgeNode(node_config(tap.url, group))
        halt = asyncio.Event()
        uplink = asyncio.create_task(node.uplink.run(halt))
        restarted: MosquittoProcess | None = None
        try:
            deadline = time.monotonic() + 30
            while not tap.published("NBIRTH"):
                assert time.monotonic() < deadline, "no first NBIRTH"
                await asyncio.sleep(0.05)
            broker.kill()
            await asyncio.sleep(3)  # the node notices and tries again (and again)
            restarted = start_mosquitto(broker.log_path.parent, port=broker.port)
            deadline = time.monotonic() + 30
            while len(tap.published("NBIRTH")) < 2:
                assert time.monotonic() < deadline, "no NBIRTH after the outage"
                await asyncio.sleep(0.05)
        finally:
            halt.set()
            await asyncio.wait_for(uplink, 15)
            if restarted is not None:
                restarted.stop()
    wills = [bd_seq(p.will.payload)[0] for p in tap.of(CONNECT) if p.will is not None]
    assert len(wills) >= 2 and wills == list(range(wills[0], wills[0] + len(wills)))
    births = tap.published("NBIRTH")
    connects = {p.connection: p for p in tap.of(CONNECT)}
    for birth in births:
        will = connects[birth.connection].will
        assert will is not None and bd_seq(birth.payload) == bd_seq(will.payload)
