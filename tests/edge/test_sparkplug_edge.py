"""Sparkplug 3.0 requirements of an edge node, one test per requirement id (issue 12).

One recorded session of plantwire's edge node in strict mode (``spec_strict``) against a real
Mosquitto, its packets read off the wire by a tap (flags as sent), its payloads read with the
specification's protobuf schema and pysparkplug; the peer playing the primary host speaks
pysparkplug's STATE and NCMD. The session: a retained offline STATE of the primary host and an
online one of another host (the node must wait), the host comes online (births), data of two
devices past a seq wrap, a rebirth request, a device lost, then a clean stop. A second, short
session speaks MQTT 3.1.1."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pysparkplug as ps
import pytest

from plantwire_bus.mosquitto import MosquittoProcess
from plantwire_bus.mqtt import Message, MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_bus.topics import state_topic
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode

from ..mqtt_tap import (
    CONNECT,
    DISCONNECT,
    DISCONNECT_WITH_WILL,
    PUBLISH,
    SUBSCRIBE,
    Packet,
    mqtt_tap,
)

REBIRTH = "Node Control/Rebirth"
BASIC_TYPES = set(range(1, 16))  # Int8 .. Text (Sparkplug basic data types)
UINT32 = 7


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class EdgeRecord:
    group: str
    packets: list[Packet]  # what the edge node sent, strict mode, MQTT 5.0
    before_host: list[Packet]  # its PUBLISH packets before the host's online STATE
    rebirth_from: int  # index in packets at which the rebirth request was sent
    received: list[Message]  # what the host's peer received through the broker
    retained: list[Message]  # retained under the group afterwards
    v311: list[Packet]  # the MQTT 3.1.1 session
    started_ms: int
    ended_ms: int
    counts: list[int]  # the values device M2 reported for Count after its birth
    published: list[Packet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.published = [p for p in self.packets if p.kind == PUBLISH]

    def kind(self, kind: str) -> list[Packet]:
        return [p for p in self.published if p.topic.split("/")[2] == kind]

    def payloads(self, kind: str) -> list[Any]:
        return [PbPayload.FromString(p.payload) for p in self.kind(kind)]

    def sparkplug(self) -> list[Packet]:
        """Everything but NDEATH, in order: the messages that carry seq."""
        return [p for p in self.published if p.topic.split("/")[2] != "NDEATH"]


def config(url: str, group: str, node: str, host: str) -> EdgeConfig:
    dummy = "opc.tcp://127.0.0.1:1"
    return EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": node,
            "mqtt_url": url,
            "primary_host_id": host,
            "batch_ms": 10,
            "spec_strict": True,
            "devices": [
                {
                    "kind": "opcua",
                    "device_id": d,
                    "endpoint": dummy,
                    "tags": [{"node": "nsu=urn:x;s=a", "metric": "Count"}],
                }
                for d in ("M1", "M2")
            ],
        }
    )


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not seen within {timeout} s"
        await asyncio.sleep(0.02)


def state(online: bool, ts: int) -> bytes:
    return bytes(ps.State(timestamp=ts, online=online).encode())


async def record(broker_url: str) -> EdgeRecord:
    u = uuid.uuid4().hex[:8]
    group, host, other = f"E{u}", f"H{u}", f"O{u}"
    received: list[Message] = []
    started = now_ms()
    async with MqttClient(parse_mqtt_url(broker_url), f"peer-{u}") as peer:
        await peer.subscribe(f"spBv1.0/{group}/#", 2)

        async def collect() -> None:
            async for message in peer.messages():
                received.append(message)

        collector = asyncio.create_task(collect())
        await peer.publish(state_topic(host), state(False, started - 1_000), retain=True)
        await peer.publish(state_topic(other), state(True, started), retain=True)
        try:
            async with mqtt_tap(broker_url) as tap:
                node = EdgeNode(config(tap.url, group, "N1", host))
                m1, m2 = node.channel("M1"), node.channel("M2")
                speed, mode = (
                    m1.metric("Speed", DataType.Double),
                    m1.metric("State/Mode", DataType.String),
                )
                count, note = (
                    m2.metric("Count", DataType.UInt32),
                    m2.metric("Note", DataType.String),
                )
                t0 = now_ms()
                m1.set_online(
                    [(speed, 1.5, t0), (mode, "AUTO", t0 - 5)]
                )  # alias order is not time order
                m2.set_online([(count, 0, t0), (note, None, t0)])  # a current value that is null
                stop = asyncio.Event()
                task = asyncio.create_task(node.run(stop))
                await until(node.connected.is_set, "the node's connection")
                await asyncio.sleep(1.0)
                before = [p for p in tap.packets if p.kind == PUBLISH]
                await peer.publish(state_topic(host), state(True, now_ms()), retain=True)
                await until(lambda: len(tap.published("DBIRTH")) == 2, "two DBIRTH")
                i, counts = 0, []
                while len(tap.published()) < 300:  # past a seq wrap
                    ts = now_ms()
                    m1.put(mode, "MANUAL" if i % 2 else "AUTO", ts)
                    m1.put(speed, float(i), ts - 1)  # reported after a newer value
                    m2.put(count, 2 * i + 1, ts)
                    m2.put(count, 2 * i + 2, ts)  # a second value within the millisecond
                    counts += [2 * i + 1, 2 * i + 2]
                    i += 1
                    await asyncio.sleep(0.012)
                rebirth_from = len(tap.packets)
                command = ps.NCmd(
                    timestamp=now_ms(),
                    metrics=(
                        ps.Metric(
                            timestamp=now_ms(),
                            name=REBIRTH,
                            datatype=ps.DataType.BOOLEAN,
                            value=True,
                        ),
                    ),
                )
                await peer.publish(f"spBv1.0/{group}/NCMD/N1", command.encode(), qos=0)
                for _ in range(20):  # data goes on while the request travels
                    m2.put(count, 10_000 + i, now_ms())
                    counts.append(10_000 + i)
                    i += 1
                    await asyncio.sleep(0.012)
                await until(lambda: len(tap.published("DBIRTH")) == 4, "the rebirth's DBIRTHs")
                m1_data = len([p for p in tap.published() if p.topic.endswith("DDATA/N1/M1")])
                m1.put(speed, 99.0, now_ms())
                await until(
                    lambda: (
                        len([p for p in tap.published() if p.topic.endswith("DDATA/N1/M1")])
                        > m1_data
                    ),
                    "data again",
                )
                m2.set_offline()
                await until(lambda: len(tap.published("DDEATH")) == 1, "DDEATH")
                stop.set()
                await asyncio.wait_for(task, 20)
                packets = list(tap.packets)
            await until(lambda: sum("/NDEATH/" in m.topic for m in received) >= 2, "NDEATH, Will")

            async with mqtt_tap(broker_url) as tap:  # MQTT 3.1.1
                node = EdgeNode(config(tap.url + "?protocol=3.1.1", group, "N2", host))
                node.channel("M1").set_online(
                    [(node.channel("M1").metric("X", DataType.Int32), 1, now_ms())]
                )
                stop = asyncio.Event()
                task = asyncio.create_task(node.run(stop))
                await until(lambda: len(tap.published("DBIRTH")) == 1, "3.1.1 births")
                stop.set()
                await asyncio.wait_for(task, 20)
                v311 = list(tap.packets)
        finally:
            collector.cancel()
            for topic in (state_topic(host), state_topic(other)):
                await peer.publish(topic, b"", retain=True)
    ended = now_ms()
    retained: list[Message] = []
    async with MqttClient(parse_mqtt_url(broker_url), f"late-{u}") as late:
        await late.subscribe(f"spBv1.0/{group}/#", 2)
        while True:
            try:
                retained.append(await asyncio.wait_for(late.next_message(), 1.0))
            except TimeoutError:
                break
    return EdgeRecord(
        group, packets, before, rebirth_from, received, retained, v311, started, ended, counts
    )


@pytest.fixture(scope="module")
def edge(mosquitto: MosquittoProcess) -> EdgeRecord:
    return asyncio.run(record(mosquitto.url))


def metric(payload: Any, name: str) -> Any:
    [found] = [m for m in payload.metrics if m.name == name]
    return found


# -- births first, and only once the primary host is online ------------------------------------
@pytest.mark.sparkplug(
    "tck-id-message-flow-edge-node-birth-publish-phid-wait-id",
    "tck-id-message-flow-edge-node-birth-publish-phid-wait-online",
    "tck-id-operational-behavior-edge-node-birth-sequence-wait",
)
def test_tck_id_message_flow_edge_node_birth_publish_phid_wait(edge: EdgeRecord) -> None:
    """A retained offline STATE of its primary host and an online one of another host: the
    node, connected, publishes nothing until its own host says online."""
    assert edge.before_host == []
    assert edge.published[0].topic.split("/")[2] == "NBIRTH"


@pytest.mark.sparkplug(
    "tck-id-message-flow-edge-node-birth-publish-connect",
    "tck-id-principles-birth-certificates-order",
)
def test_tck_id_payloads_dbirth_order(edge: EdgeRecord) -> None:
    """In every connection: CONNECT, then NBIRTH as the first message, then a DBIRTH for each
    device before any data; after the rebirth request, the same."""
    for connection in {p.connection for p in edge.packets}:
        packets = [p for p in edge.packets if p.connection == connection]
        assert packets[0].kind == CONNECT
        kinds = [p.topic.split("/")[2] for p in packets if p.kind == PUBLISH]
        births = [i for i, k in enumerate(kinds) if k == "NBIRTH"]
        assert births and births[0] == 0
        for at in births:
            assert kinds[at + 1 : at + 3] == ["DBIRTH", "DBIRTH"]


@pytest.mark.sparkplug("tck-id-payloads-ndata-order")
def test_tck_id_payloads_ddata_order(edge: EdgeRecord) -> None:
    """No data message precedes the births of its connection; the node publishes no NDATA."""
    assert edge.kind("NDATA") == []
    kinds = [p.topic.split("/")[2] for p in edge.published]
    assert kinds.index("DDATA") > max(i for i, k in enumerate(kinds[:10]) if k == "DBIRTH")


def test_tck_id_message_flow_device_birth_publish_nbirth_wait(edge: EdgeRecord) -> None:
    kinds = [p.topic.split("/")[2] for p in edge.published]
    assert kinds.index("NBIRTH") < kinds.index("DBIRTH")


# -- topics ------------------------------------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-topic-structure-namespace-a",
    "tck-id-topics-nbirth-topic",
    "tck-id-topics-dbirth-topic",
    "tck-id-topics-ddata-topic",
    "tck-id-topics-ddeath-topic",
    "tck-id-topics-ndeath-topic",
    "tck-id-message-flow-edge-node-birth-publish-nbirth-topic",
    "tck-id-message-flow-device-birth-publish-dbirth-topic",
    "tck-id-message-flow-device-birth-publish-dbirth-match-edge-node-topic",
    "tck-id-topic-structure-namespace-device-id-associated-message-types",
    "tck-id-topic-structure-namespace-device-id-non-associated-message-types",
)
def test_tck_id_topic_structure(edge: EdgeRecord) -> None:
    """Every topic is spBv1.0/group/TYPE/node[/device]: the device only on device messages."""
    for p in edge.published:
        parts = p.topic.split("/")
        assert parts[:2] == ["spBv1.0", edge.group] and parts[3] == "N1", p.topic
        if parts[2] in ("DBIRTH", "DDATA", "DDEATH"):
            assert len(parts) == 5 and parts[4] in ("M1", "M2"), p.topic
        else:
            assert parts[2] in ("NBIRTH", "NDEATH") and len(parts) == 4, p.topic


@pytest.mark.sparkplug(
    "tck-id-topic-structure-namespace-valid-edge-node-id",
    "tck-id-topic-structure-namespace-valid-device-id",
)
@pytest.mark.parametrize("bad", ["a+b", "a/b", "a#b"])
def test_tck_id_topic_structure_namespace_valid_group_id(bad: str) -> None:
    """Group, edge node and device ids with + / # are refused by the config."""
    good = config("mqtt://127.0.0.1:1", "G", "N", "H").model_dump()
    for change in ({"group_id": bad}, {"edge_node_id": bad}):
        with pytest.raises(ValueError):
            EdgeConfig.model_validate({**good, **change})
    devices = [{**good["devices"][0], "device_id": bad}]
    with pytest.raises(ValueError):
        EdgeConfig.model_validate({**good, "devices": devices})


def test_tck_id_topic_structure_namespace_unique_device_id() -> None:
    good = config("mqtt://127.0.0.1:1", "G", "N", "H").model_dump()
    devices = [good["devices"][0], good["devices"][0]]
    with pytest.raises(ValueError, match="duplicate device_id"):
        EdgeConfig.model_validate({**good, "devices": devices})


def test_tck_id_message_flow_edge_node_ncmd_subscribe(edge: EdgeRecord) -> None:
    """tck-id-topics-ncmd-topic on the node's side: it subscribes to its own NCMD topic."""
    filters = {f for p in edge.packets if p.kind == SUBSCRIBE for f in p.filters}
    assert f"spBv1.0/{edge.group}/NCMD/N1" in filters


# -- QoS 0 and no retain in strict mode --------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-topics-nbirth-mqtt",
    "tck-id-topics-dbirth-mqtt",
    "tck-id-topics-ddata-mqtt",
    "tck-id-topics-ddeath-mqtt",
    "tck-id-message-flow-edge-node-birth-publish-nbirth-qos",
    "tck-id-message-flow-edge-node-birth-publish-nbirth-retained",
    "tck-id-message-flow-device-birth-publish-dbirth-qos",
    "tck-id-message-flow-device-birth-publish-dbirth-retained",
    "tck-id-payloads-nbirth-qos",
    "tck-id-payloads-nbirth-retain",
    "tck-id-payloads-dbirth-qos",
    "tck-id-payloads-dbirth-retain",
    "tck-id-payloads-ddata-qos",
    "tck-id-payloads-ddata-retain",
)
def test_tck_id_payloads_ndata_qos(edge: EdgeRecord) -> None:
    """Strict mode: births, data and device deaths at QoS 0, never retained (as sent, and
    nothing retained under the group afterwards)."""
    sent = [p for p in edge.sparkplug()]
    assert sent and all(p.qos == 0 and not p.retain for p in sent)
    assert edge.retained == []


# -- NBIRTH ------------------------------------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-topics-nbirth-timestamp",
    "tck-id-topics-nbirth-seq-num",
    "tck-id-payloads-nbirth-seq",
    "tck-id-payloads-sequence-num-zero-nbirth",
    "tck-id-message-flow-edge-node-birth-publish-nbirth-payload-seq",
)
def test_tck_id_payloads_nbirth_timestamp(edge: EdgeRecord) -> None:
    """Every NBIRTH has seq 0 and a UTC timestamp of the time it was sent."""
    for pb in edge.payloads("NBIRTH"):
        assert pb.HasField("seq") and pb.seq == 0
        assert edge.started_ms <= pb.timestamp <= edge.ended_ms


@pytest.mark.sparkplug(
    "tck-id-topics-nbirth-bdseq-included",
    "tck-id-topics-nbirth-bdseq-matching",
    "tck-id-payloads-nbirth-bdseq",
    "tck-id-payloads-nbirth-bdseq-repeat",
    "tck-id-payloads-ndeath-bdseq",
    "tck-id-operational-behavior-data-commands-rebirth-action-3",
)
def test_tck_id_message_flow_edge_node_birth_publish_nbirth_payload_bdseq(
    edge: EdgeRecord,
) -> None:
    """Each NBIRTH (the first and the rebirth's) carries bdSeq as Int64, the value of the Will
    of the CONNECT packet of its connection."""
    wills = {p.connection: p.will for p in edge.packets if p.kind == CONNECT}
    for packet in edge.kind("NBIRTH"):
        will = wills[packet.connection]
        assert will is not None
        bd = metric(PbPayload.FromString(packet.payload), "bdSeq")
        assert bd.datatype == ps.DataType.INT64 and bd.HasField("long_value")
        assert bd.long_value == metric(PbPayload.FromString(will.payload), "bdSeq").long_value


@pytest.mark.sparkplug(
    "tck-id-payloads-nbirth-rebirth-req",
    "tck-id-operational-behavior-data-commands-rebirth-name",
    "tck-id-operational-behavior-data-commands-rebirth-name-aliases",
    "tck-id-operational-behavior-data-commands-rebirth-datatype",
    "tck-id-operational-behavior-data-commands-rebirth-value",
)
def test_tck_id_topics_nbirth_rebirth_metric(edge: EdgeRecord) -> None:
    for pb in edge.payloads("NBIRTH"):
        rebirth = metric(pb, REBIRTH)
        assert rebirth.datatype == ps.DataType.BOOLEAN and rebirth.HasField("boolean_value")
        assert rebirth.boolean_value is False and not rebirth.HasField("alias")


@pytest.mark.sparkplug(
    "tck-id-message-flow-edge-node-birth-publish-nbirth-payload",
    "tck-id-message-flow-device-birth-publish-dbirth-payload",
    "tck-id-topics-nbirth-metrics",
    "tck-id-payloads-alias-birth-requirement",
    "tck-id-payloads-metric-datatype-req",
    "tck-id-payloads-name-requirement",
    "tck-id-operational-behavior-data-publish-nbirth-values",
    "tck-id-operational-behavior-data-publish-dbirth-values",
)
def test_tck_id_topics_dbirth_metrics(edge: EdgeRecord) -> None:
    """Births: every metric with name, datatype and its current value, or is_null and no
    value; DBIRTH metrics with their alias too; with pysparkplug reading them alike."""
    for kind in ("NBIRTH", "DBIRTH"):
        for packet in edge.kind(kind):
            pb = PbPayload.FromString(packet.payload)
            assert pb.metrics
            for m in pb.metrics:
                assert m.name and m.datatype in BASIC_TYPES
                assert (m.WhichOneof("value") is None) == m.is_null, m
                assert m.HasField("alias") or kind == "NBIRTH"
            decoded = (ps.NBirth if kind == "NBIRTH" else ps.DBirth).decode(packet.payload)
            assert {m.name for m in decoded.metrics} == {m.name for m in pb.metrics}
    m2 = [PbPayload.FromString(p.payload) for p in edge.kind("DBIRTH") if p.topic.endswith("M2")]
    assert metric(m2[0], "Note").is_null  # its current value was null


@pytest.mark.sparkplug(
    "tck-id-topics-nbirth-metric-reqs",
    "tck-id-operational-behavior-data-publish-nbirth",
    "tck-id-operational-behavior-data-publish-dbirth",
)
def test_tck_id_topics_dbirth_metric_reqs(edge: EdgeRecord) -> None:
    """Every alias a DDATA carries was in its device's DBIRTH of that session; the node reports
    no node-level data beyond its NBIRTH (no NDATA)."""
    born: dict[str, set[int]] = {}
    for packet in edge.published:
        kind, device = packet.topic.split("/")[2], packet.topic.split("/")[-1]
        pb = PbPayload.FromString(packet.payload)
        if kind == "NBIRTH":
            born = {}
        elif kind == "DBIRTH":
            born[device] = {m.alias for m in pb.metrics}
        elif kind == "DDATA":
            assert {m.alias for m in pb.metrics} <= born[device]
    assert edge.kind("NDATA") == []


@pytest.mark.sparkplug("tck-id-payloads-alias-data-cmd-requirement")
def test_tck_id_payloads_alias_uniqueness(edge: EdgeRecord) -> None:
    """Aliases are unique across the node's metrics; data messages carry aliases, no names."""
    for packet in edge.kind("NBIRTH"):
        births = [
            PbPayload.FromString(p.payload)
            for p in edge.published
            if p.connection == packet.connection and "/DBIRTH/" in p.topic
        ][:2]
        aliases = [m.alias for pb in births for m in pb.metrics]
        assert len(aliases) == len(set(aliases)) == 4
    for pb in edge.payloads("DDATA"):
        assert all(m.HasField("alias") and not m.name for m in pb.metrics)


# -- DBIRTH, DDATA, DDEATH ---------------------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-topics-dbirth-seq",
    "tck-id-topics-ddata-seq-num",
    "tck-id-topics-ddeath-seq-num",
    "tck-id-payloads-dbirth-seq",
    "tck-id-payloads-dbirth-seq-inc",
    "tck-id-payloads-ddata-seq",
    "tck-id-payloads-ddata-seq-inc",
    "tck-id-payloads-ddeath-seq",
    "tck-id-payloads-ddeath-seq-inc",
    "tck-id-payloads-ddeath-seq-number",
    "tck-id-payloads-sequence-num-always-included",
    "tck-id-message-flow-device-birth-publish-dbirth-payload-seq",
)
def test_tck_id_payloads_sequence_num_incrementing(edge: EdgeRecord) -> None:
    """seq: 0 on NBIRTH, then one up on every message of the node (DBIRTH, DDATA, DDEATH),
    255 followed by 0; the session went past the wrap."""
    expected, wrapped = 0, False
    for packet in edge.sparkplug():
        pb = PbPayload.FromString(packet.payload)
        assert pb.HasField("seq"), packet.topic
        if "/NBIRTH/" in packet.topic:
            expected = 0
        assert pb.seq == expected, packet.topic
        wrapped |= pb.seq == 255
        expected = (expected + 1) % 256
    assert wrapped


@pytest.mark.sparkplug(
    "tck-id-topics-dbirth-timestamp",
    "tck-id-topics-ddata-timestamp",
    "tck-id-payloads-dbirth-timestamp",
    "tck-id-payloads-ddata-timestamp",
    "tck-id-payloads-ddeath-timestamp",
    "tck-id-payloads-metric-timestamp-in-UTC",
    "tck-id-payloads-name-birth-data-requirement",
)
def test_tck_id_payloads_timestamp_in_utc(edge: EdgeRecord) -> None:
    """Every payload and every birth or data metric has a timestamp: UTC milliseconds of this
    session (the wall clock of the run brackets them)."""
    lo, hi = edge.started_ms - 10_000, edge.ended_ms
    for packet in edge.sparkplug():
        pb = PbPayload.FromString(packet.payload)
        assert pb.HasField("timestamp") and lo <= pb.timestamp <= hi, packet.topic
        if "/DDEATH/" in packet.topic:
            continue
        for m in pb.metrics:
            assert m.HasField("timestamp") and lo <= m.timestamp <= hi, (packet.topic, m)


@pytest.mark.sparkplug("tck-id-operational-behavior-data-publish-nbirth-order")
def test_tck_id_operational_behavior_data_publish_dbirth_order(edge: EdgeRecord) -> None:
    """Non-historical metric values in chronological order in births and data, though the
    device reported a value older than one before it and its birth's aliases run the other
    way."""
    for kind in ("NBIRTH", "DBIRTH", "DDATA"):
        for pb in edge.payloads(kind):
            times = [m.timestamp for m in pb.metrics if not m.is_historical]
            assert times == sorted(times), kind


def test_tck_id_topics_ddata_payload(edge: EdgeRecord) -> None:
    """Every change a device reported after its birth is in a DDATA, in the order reported
    (read with pysparkplug against the birth in force)."""
    sent: list[Any] = []
    birth = None
    for packet in edge.published:
        if packet.topic.endswith("DBIRTH/N1/M2"):
            birth = ps.DBirth.decode(packet.payload)
        elif packet.topic.endswith("DDATA/N1/M2"):
            data = ps.DData.decode(packet.payload, birth=birth)
            sent += [m.value for m in data.metrics if m.name == "Count"]
    changes = [v for v in sent if v != 0]  # 0: the current value it came online with
    assert changes == edge.counts


@pytest.mark.sparkplug(
    "tck-id-payloads-metric-datatype-value-type",
    "tck-id-payloads-metric-datatype-not-req",
)
def test_tck_id_payloads_metric_datatype_value(edge: EdgeRecord) -> None:
    """Birth datatypes are Sparkplug basic types; data messages leave them out; pysparkplug
    decodes every data message against its birth."""
    births: dict[str, Any] = {}
    for packet in edge.published:
        kind, device = packet.topic.split("/")[2], packet.topic.split("/")[-1]
        if kind == "DBIRTH":
            births[device] = ps.DBirth.decode(packet.payload)
            assert all(int(m.datatype) in BASIC_TYPES for m in births[device].metrics)
        elif kind == "DDATA":
            assert all(m.datatype == 0 for m in PbPayload.FromString(packet.payload).metrics)
            decoded = ps.DData.decode(packet.payload, birth=births[device])
            assert all(m.name for m in decoded.metrics)


@pytest.mark.sparkplug(
    "tck-id-payloads-propertyset-values-array-size",
    "tck-id-payloads-metric-propertyvalue-type-type",
    "tck-id-payloads-metric-propertyvalue-type-value",
)
def test_tck_id_payloads_propertyset_keys_array_size(edge: EdgeRecord) -> None:
    """The one property set the node sends (the ordinal of a second value within one
    millisecond) has as many keys as values, each a basic type; the session sent some."""
    seen = 0
    for pb in edge.payloads("DDATA"):
        for m in pb.metrics:
            if m.HasField("properties"):
                seen += 1
                assert len(m.properties.keys) == len(m.properties.values)
                assert all(v.type == UINT32 for v in m.properties.values)
    assert seen > 0


def test_tck_id_operational_behavior_device_ddeath(edge: EdgeRecord) -> None:
    """The device lost: a DDEATH on its behalf, after which nothing of it is published."""
    [death] = edge.kind("DDEATH")
    assert death.topic == f"spBv1.0/{edge.group}/DDEATH/N1/M2"
    after = edge.published[edge.published.index(death) + 1 :]
    assert not any(p.topic.endswith("/M2") for p in after)


# -- rebirth -----------------------------------------------------------------------------------
@pytest.mark.sparkplug("tck-id-operational-behavior-data-commands-rebirth-action-2")
def test_tck_id_operational_behavior_data_commands_rebirth_action_1(edge: EdgeRecord) -> None:
    """On the rebirth request the node stops its data and sends a whole birth sequence (NBIRTH,
    a DBIRTH per device) before any data again, in the same connection (same bdSeq)."""
    later = [p for p in edge.packets[edge.rebirth_from :] if p.kind == PUBLISH]
    kinds = [p.topic.split("/")[2] for p in later]
    at = kinds.index("NBIRTH")
    assert kinds[at : at + 3] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    assert set(kinds[:at]) <= {"DDATA"}  # what was on its way when the request came
    assert later[at].connection == edge.published[0].connection


# -- the Will, NDEATH and the end of a session -------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-message-flow-edge-node-birth-publish-will-message-topic",
    "tck-id-message-flow-edge-node-birth-publish-will-message-payload",
    "tck-id-message-flow-edge-node-birth-publish-will-message-qos",
    "tck-id-message-flow-edge-node-birth-publish-will-message-will-retained",
    "tck-id-payloads-ndeath-will-message",
    "tck-id-payloads-ndeath-will-message-qos",
    "tck-id-payloads-ndeath-will-message-retain",
    "tck-id-topics-ndeath-payload",
    "tck-id-topics-ndeath-seq",
    "tck-id-payloads-ndeath-seq",
)
def test_tck_id_message_flow_edge_node_birth_publish_will_message(edge: EdgeRecord) -> None:
    """Every CONNECT has a Will: NDEATH topic, QoS 1, not retained, a protobuf payload with
    bdSeq alone and no seq; the NDEATH published at the end is the same."""
    connects = [p for p in edge.packets + edge.v311 if p.kind == CONNECT]
    assert connects
    ndeaths = [w.payload for c in connects if (w := c.will) is not None]
    for c in connects:
        assert c.will is not None and c.will.qos == 1 and not c.will.retain
        assert c.will.topic.split("/")[2] == "NDEATH" and c.will.topic.split("/")[1] == edge.group
    for payload in ndeaths + [p.payload for p in edge.kind("NDEATH")]:
        pb = PbPayload.FromString(payload)
        assert [m.name for m in pb.metrics] == ["bdSeq"] and not pb.HasField("seq")
        assert ps.NDeath.decode(payload).bd_seq_metric.datatype == ps.DataType.INT64


@pytest.mark.sparkplug("tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt311")
def test_tck_id_operational_behavior_edge_node_intentional_disconnect_ndeath(
    edge: EdgeRecord,
) -> None:
    """A clean stop: NDEATH, then DISCONNECT, in MQTT 5.0 and 3.1.1."""
    for packets in (edge.packets, edge.v311):
        last = [p for p in packets if p.kind in (PUBLISH, DISCONNECT)][-2:]
        assert [p.kind for p in last] == [PUBLISH, DISCONNECT]
        assert last[0].topic.split("/")[2] == "NDEATH"


def test_tck_id_payloads_ndeath_will_message_publisher_disconnect_mqtt50(
    edge: EdgeRecord,
) -> None:
    """The MQTT 5.0 DISCONNECT says 'Disconnect with Will Message'; the broker then publishes
    the Will as well (a second NDEATH, same bdSeq), which the host's peer received."""
    assert edge.packets[-1].reason == DISCONNECT_WITH_WILL
    bd = [
        ps.NDeath.decode(m.payload).bd_seq_metric.value
        for m in edge.received
        if "/NDEATH/N1" in m.topic
    ]
    assert len(bd) == 2 and bd[0] == bd[1]


@pytest.mark.sparkplug("tck-id-principles-persistence-clean-session-311")
def test_tck_id_principles_persistence_clean_session_50(edge: EdgeRecord) -> None:
    for packets, level in ((edge.packets, 5), (edge.v311, 4)):
        connects = [p for p in packets if p.kind == CONNECT]
        assert connects and all(c.protocol == level and c.clean_start for c in connects)
        assert all(c.session_expiry == 0 for c in connects)
