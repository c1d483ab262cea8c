"""Sparkplug 3.0 requirements of a host application, one test per requirement id (issue 12).

One recorded life of plantwire's ingest worker in strict mode (``spec_strict``), refusing
unregistered nodes as by default, against a real Mosquitto and PostgreSQL (a registry naming
the node), its packets read off the wire by a tap (flags as sent). The edge node it serves is
pysparkplug's: its payloads, its STATE reading. The life: connect and announce, births of a
node with a node metric and two devices, data, a seq gap (a rebirth request), a DDEATH
stamped in the past, an NDEATH, its own STATE said offline by someone else, a clean stop. A
second, short life speaks MQTT 3.1.1."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import pysparkplug as ps
import pytest

from plantwire_bus.mosquitto import MosquittoProcess
from plantwire_bus.mqtt import Message, MqttClient, Will, parse_mqtt_url
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_platform import services
from plantwire_platform.database import migrate
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry
from plantwire_platform.settings import PlatformSettings

from ...mqtt_tap import CONNECT, DISCONNECT, PUBLISH, SUBSCRIBE, Packet, mqtt_tap
from .test_worker import WorkerFactory, start_worker

__all__ = ["start_worker"]  # the fixture

REBIRTH = "Node Control/Rebirth"
INT64, DOUBLE, BOOLEAN = ps.DataType.INT64, ps.DataType.DOUBLE, ps.DataType.BOOLEAN


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class HostRecord:
    host: str
    group: str
    packets: list[Packet]  # what the host sent, strict mode, MQTT 5.0
    v311: list[Packet]  # a second life over MQTT 3.1.1
    commands: list[Message]  # NCMD the edge node received
    states: list[Message]  # STATE messages the edge node received
    ddeath_ts: int
    ndeath_window: tuple[int, int]  # host time around the NDEATH
    after_ddeath: dict[str, Any]
    after_ndeath: dict[str, Any]
    reannounced: list[Message]  # STATE seen after someone said the host offline
    gap_sent_ms: int
    published: list[Packet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.published = [p for p in self.packets if p.kind == PUBLISH]

    def state_packets(self) -> list[Packet]:
        return [p for p in self.published if p.topic == f"spBv1.0/STATE/{self.host}"]

    def connect(self) -> Packet:
        return next(p for p in self.packets if p.kind == CONNECT)


def ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


async def snapshot(url: str, group: str) -> dict[str, Any]:
    """Per device ('' for the node): when its session ended, when its series went stale, and
    whether the node is online; read in one snapshot of the database."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        cur = await conn.execute(
            "SELECT device_id, offline_at FROM connectivity_session WHERE group_id = %s"
            " ORDER BY online_at",
            (group,),
        )
        sessions = {r[0]: ms(r[1]) for r in await cur.fetchall()}  # each device's last
        cur = await conn.execute(
            "SELECT device_id || '/' || metric, stale_since FROM series WHERE group_id = %s",
            (group,),
        )
        stale = {r[0]: ms(r[1]) for r in await cur.fetchall()}
        cur = await conn.execute("SELECT online FROM sparkplug_node WHERE group_id = %s", (group,))
        online = [r[0] for r in await cur.fetchall()]
    return {"sessions": sessions, "stale": stale, "online": online}


async def until_db(url: str, group: str, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        snap = await snapshot(url, group)
        if check(snap):
            return snap
        assert time.monotonic() < deadline, f"{what}: {snap}"
        await asyncio.sleep(0.1)


async def next_of(client: MqttClient, prefix: str, into: list[Message], timeout: float) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(client.next_message(), deadline - time.monotonic())
        if message.topic.startswith(prefix):
            into.append(message)
            return message


REGISTRY = """
[[enterprises]]
code = "{group}"
uscc = "91110000MA0000000X"
name = "Host Record Works"

[[enterprises.sites]]
code = "S1"
name = "Site 1"
edge_node = "PY"

[[enterprises.sites.lines]]
code = "L1"
name = "Line 1"

[[enterprises.sites.equipment]]
code = "M1"
name = "Machine 1"
line = "L1"
control_type = "CNC"
declared_nc = true

[[enterprises.sites.equipment]]
code = "M2"
name = "Machine 2"
line = "L1"
control_type = "CNC"
declared_nc = true
"""


async def record(broker_url: str, database_url: str) -> HostRecord:
    u = uuid.uuid4().hex[:8]
    host, group = f"ph-{u}", f"P{u}"
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(conn, parse_registry(REGISTRY.format(group=group)))
    state, node_topic = f"spBv1.0/STATE/{host}", f"spBv1.0/{group}/{{}}/PY"
    commands: list[Message] = []
    states: list[Message] = []
    death = ps.NDeath(
        timestamp=now_ms(),
        bd_seq_metric=ps.Metric(timestamp=now_ms(), name="bdSeq", datatype=INT64, value=0),
    )
    will = Will(node_topic.format("NDEATH"), death.encode(), qos=1)
    async with (
        mqtt_tap(broker_url) as tap,
        MqttClient(parse_mqtt_url(broker_url), f"py-{u}", will=will) as edge,
    ):
        await edge.subscribe(state)
        await edge.subscribe(node_topic.format("NCMD"))
        settings = PlatformSettings(
            database_url=database_url,
            mqtt_url=tap.url,
            host_id=host,
            batch_age_ms=50,
            spec_strict=True,
            rebirth_holdoff_s=1,
        )
        worker = IngestWorker(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        online = ps.State.decode((await next_of(edge, state, states, 30)).payload)
        assert online.online

        t0 = now_ms() - 60_000  # born a minute ago

        def m(name: str, alias: int, dt: ps.DataType, value: Any, ts: int | None = None) -> Any:
            return ps.Metric(timestamp=ts or t0, name=name, datatype=dt, value=value, alias=alias)

        async def send(kind: str, payload: Any, device: str = "") -> None:
            topic = node_topic.format(kind) + (f"/{device}" if device else "")
            await edge.publish(topic, payload.encode(), qos=0)

        await send(
            "NBIRTH",
            ps.NBirth(
                timestamp=t0,
                seq=0,
                metrics=(
                    ps.Metric(timestamp=t0, name="bdSeq", datatype=INT64, value=0),
                    ps.Metric(timestamp=t0, name=REBIRTH, datatype=BOOLEAN, value=False),
                    m("Temperature", 1, DOUBLE, 20.5),
                ),
            ),
        )
        await send(
            "DBIRTH", ps.DBirth(timestamp=t0, seq=1, metrics=(m("Speed", 2, DOUBLE, 1.0),)), "M1"
        )
        await send(
            "DBIRTH", ps.DBirth(timestamp=t0, seq=2, metrics=(m("Count", 3, DOUBLE, 0.0),)), "M2"
        )
        data = ps.DData(
            timestamp=now_ms(),
            seq=3,
            metrics=(
                ps.Metric(timestamp=now_ms(), name=None, alias=2, datatype=DOUBLE, value=2.0),
            ),
        )
        await send("DDATA", data, "M1")
        gap_sent = now_ms()
        for seq in (5, 6):  # seq 4 never comes
            data = ps.DData(
                timestamp=now_ms(),
                seq=seq,
                metrics=(
                    ps.Metric(
                        timestamp=now_ms(), name=None, alias=3, datatype=DOUBLE, value=float(seq)
                    ),
                ),
            )
            await send("DDATA", data, "M2")
        await next_of(edge, node_topic.format("NCMD"), commands, 30)
        ddeath_ts = now_ms() - 5_000  # the device was lost a while ago
        await send("DDEATH", ps.DDeath(timestamp=ddeath_ts, seq=7), "M2")
        after_ddeath = await until_db(
            database_url, group, lambda s: s["sessions"].get("M2") is not None, "DDEATH taken"
        )
        before = now_ms()
        await send("NDEATH", death)
        after_ndeath = await until_db(
            database_url, group, lambda s: s["online"] == [False], "NDEATH taken"
        )
        after = now_ms()
        # someone (a stale Will, a rogue client) says the host is offline
        await edge.publish(
            state, ps.State(timestamp=online.timestamp, online=False).encode(), retain=True
        )
        reannounced: list[Message] = []
        while not ps.State.decode((await next_of(edge, state, reannounced, 30)).payload).online:
            pass
        stop.set()
        await asyncio.wait_for(task, 20)
        packets = list(tap.packets)

    async with mqtt_tap(broker_url) as tap:  # MQTT 3.1.1
        settings = settings.model_copy(update={"mqtt_url": tap.url + "?protocol=3.1.1"})
        worker = IngestWorker(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(worker.ready.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 20)
        v311 = list(tap.packets)
    async with MqttClient(parse_mqtt_url(broker_url), f"clean-{u}") as clean:
        await clean.publish(state, b"", retain=True)
    return HostRecord(
        host,
        group,
        packets,
        v311,
        commands,
        states,
        ddeath_ts,
        (before, after),
        after_ddeath,
        after_ndeath,
        reannounced,
        gap_sent,
    )


@pytest.fixture(scope="module")
def module_database(plain_admin_url: str) -> Iterator[str]:
    """A migrated database of this module's own (on plain PostgreSQL)."""
    name = f"plantwire_h_{uuid.uuid4().hex[:12]}"
    url = services.ensure_database(plain_admin_url, name, fresh=True)
    asyncio.run(migrate(url))
    yield url
    services.drop_database(plain_admin_url, name)


@pytest.fixture(scope="module")
def host(mosquitto: MosquittoProcess, module_database: str) -> HostRecord:
    return asyncio.run(record(mosquitto.url, module_database))


# -- connecting, subscribing, announcing -------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-host-topic-phid-death-required",
    "tck-id-host-topic-phid-death-qos",
    "tck-id-host-topic-phid-death-retain",
    "tck-id-host-topic-phid-death-topic",
    "tck-id-host-topic-phid-death-payload",
    "tck-id-operational-behavior-host-application-connect-will",
    "tck-id-operational-behavior-host-application-connect-will-topic",
    "tck-id-operational-behavior-host-application-connect-will-payload",
    "tck-id-operational-behavior-host-application-connect-will-qos",
    "tck-id-operational-behavior-host-application-connect-will-retained",
    "tck-id-operational-behavior-host-application-death-payload",
    "tck-id-payloads-state-will-message-qos",
    "tck-id-payloads-state-will-message-retain",
    "tck-id-payloads-state-will-message-payload",
)
def test_tck_id_payloads_state_will_message(host: HostRecord) -> None:
    """Every CONNECT carries a Will on spBv1.0/STATE/host: QoS 1, retained, UTF-8 JSON with
    online false and a UTC millisecond timestamp of the time of the CONNECT."""
    for packets in (host.packets, host.v311):
        for connect in (p for p in packets if p.kind == CONNECT):
            will = connect.will
            assert will is not None and will.topic == f"spBv1.0/STATE/{host.host}"
            assert will.qos == 1 and will.retain
            decoded = ps.State.decode(will.payload.decode("utf-8").encode())
            assert decoded.online is False and isinstance(decoded.timestamp, int)
            assert (
                abs(decoded.timestamp - (now_ms() - (time.monotonic() - connect.at) * 1000)) < 5_000
            )


@pytest.mark.sparkplug(
    "tck-id-host-topic-phid-birth-sub-required",
    "tck-id-message-flow-phid-sparkplug-subscription",
    "tck-id-payloads-state-subscribe",
)
def test_tck_id_host_topic_phid_birth_required(host: HostRecord) -> None:
    """After connecting: subscriptions to its own STATE topic and to the topics of the edge
    nodes the registry names (its node's and devices') first, then the STATE birth."""
    for packets in (host.packets, host.v311):
        kinds = [(p.kind, p.filters or p.topic) for p in packets if p.kind in (SUBSCRIBE, PUBLISH)]
        first_publish = next(i for i, k in enumerate(kinds) if k[0] == PUBLISH)
        filters = {f for kind, fs in kinds[:first_publish] if kind == SUBSCRIBE for f in fs}
        node = f"spBv1.0/{host.group}/+/PY"
        assert {f"spBv1.0/STATE/{host.host}", node, f"{node}/+"} <= filters
        assert kinds[first_publish][1] == f"spBv1.0/STATE/{host.host}"


@pytest.mark.sparkplug(
    "tck-id-host-topic-phid-birth-message",
    "tck-id-host-topic-phid-birth-qos",
    "tck-id-host-topic-phid-birth-retain",
    "tck-id-host-topic-phid-birth-topic",
    "tck-id-host-topic-phid-birth-payload",
    "tck-id-principles-birth-certificates-order",
    "tck-id-message-flow-phid-sparkplug-state-publish",
    "tck-id-message-flow-phid-sparkplug-state-publish-payload",
    "tck-id-message-flow-phid-sparkplug-state-publish-payload-timestamp",
    "tck-id-operational-behavior-host-application-connect-birth",
    "tck-id-operational-behavior-host-application-connect-birth-topic",
    "tck-id-operational-behavior-host-application-connect-birth-payload",
    "tck-id-operational-behavior-host-application-connect-birth-qos",
    "tck-id-operational-behavior-host-application-connect-birth-retained",
    "tck-id-payloads-state-birth-payload",
)
def test_tck_id_payloads_state_birth(host: HostRecord) -> None:
    """The first message of each connection is STATE online, QoS 1, retained, JSON with the
    timestamp of that CONNECT's Will; the edge node (pysparkplug) read it as online."""
    for packets in (host.packets, host.v311):
        connect = next(p for p in packets if p.kind == CONNECT)
        first = next(p for p in packets if p.kind == PUBLISH)
        assert first.topic == f"spBv1.0/STATE/{host.host}" and first.qos == 1 and first.retain
        birth = ps.State.decode(first.payload)
        assert connect.will is not None
        assert birth.online and birth.timestamp == ps.State.decode(connect.will.payload).timestamp
    assert ps.State.decode(host.states[0].payload).online


@pytest.mark.sparkplug("tck-id-message-flow-phid-sparkplug-clean-session-311")
def test_tck_id_message_flow_phid_sparkplug_clean_session_50(host: HostRecord) -> None:
    """Strict mode: Clean Start with Session Expiry 0 (MQTT 5.0), Clean Session (3.1.1)."""
    for packets, level in ((host.packets, 5), (host.v311, 4)):
        connects = [p for p in packets if p.kind == CONNECT]
        assert connects and all(c.protocol == level and c.clean_start for c in connects)
        assert all(c.session_expiry == 0 for c in connects)


def test_tck_id_message_flow_hid_sparkplug_state_message_delivered(host: HostRecord) -> None:
    """Told it is offline on its own STATE topic, the host says online again at once, with the
    timestamp of its connection's Will."""
    online = [ps.State.decode(m.payload) for m in host.reannounced]
    assert online[-1].online
    assert online[-1].timestamp == ps.State.decode(host.states[0].payload).timestamp


@pytest.mark.sparkplug(
    "tck-id-operational-behavior-host-application-termination",
    "tck-id-operational-behavior-host-application-death-topic",
    "tck-id-operational-behavior-host-application-death-qos",
    "tck-id-operational-behavior-host-application-death-retained",
)
def test_tck_id_host_topic_phid_death_payload_disconnect_clean(host: HostRecord) -> None:
    """A clean stop: STATE offline (QoS 1, retained, stamped at the stop), then DISCONNECT."""
    for packets in (host.packets, host.v311):
        last = [p for p in packets if p.kind in (PUBLISH, DISCONNECT)][-2:]
        assert [p.kind for p in last] == [PUBLISH, DISCONNECT]
        death = last[0]
        assert death.topic == f"spBv1.0/STATE/{host.host}" and death.qos == 1 and death.retain
        state = ps.State.decode(death.payload)
        assert not state.online
        assert abs(state.timestamp - (now_ms() - (time.monotonic() - death.at) * 1000)) < 5_000


# -- commands ----------------------------------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-topics-ncmd-topic",
    "tck-id-topics-ncmd-mqtt",
    "tck-id-topics-ncmd-timestamp",
    "tck-id-topics-ncmd-payload",
    "tck-id-payloads-ncmd-timestamp",
    "tck-id-payloads-ncmd-seq",
    "tck-id-payloads-ncmd-qos",
    "tck-id-payloads-ncmd-retain",
    "tck-id-operational-behavior-data-commands-ncmd-verb",
    "tck-id-operational-behavior-data-commands-ncmd-rebirth-name",
    "tck-id-operational-behavior-data-commands-ncmd-rebirth-value",
    "tck-id-operational-behavior-data-commands-ncmd-metric-value",
)
def test_tck_id_operational_behavior_data_commands_ncmd_rebirth_verb(host: HostRecord) -> None:
    """The seq gap is answered with an NCMD on spBv1.0/group/NCMD/node: QoS 0, not retained,
    a timestamp of its sending, no seq, the metric Node Control/Rebirth = true (Boolean)."""
    [sent] = [p for p in host.published if "/NCMD/" in p.topic]
    assert sent.topic == f"spBv1.0/{host.group}/NCMD/PY" and sent.qos == 0 and not sent.retain
    pb = PbPayload.FromString(sent.payload)
    assert not pb.HasField("seq")
    command = ps.NCmd.decode(host.commands[0].payload)
    assert host.gap_sent_ms <= command.timestamp <= now_ms()
    [metric] = command.metrics
    assert (metric.name, metric.datatype, metric.value) == (REBIRTH, BOOLEAN, True)


# -- deaths ------------------------------------------------------------------------------------
@pytest.mark.sparkplug(
    "tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-tags-stale",
    "tck-id-operational-behavior-edge-node-termination-host-action-ndeath-devices-offline",
    "tck-id-operational-behavior-edge-node-termination-host-action-ndeath-devices-tags-stale",
)
def test_tck_id_operational_behavior_edge_node_termination_host_action_ndeath_node_offline(
    host: HostRecord,
) -> None:
    """After the NDEATH: the node offline, its session and its devices' closed, and the node's
    and devices' metrics stale, at the host's time of receipt (not the payload's)."""
    lo, hi = host.ndeath_window
    snap = host.after_ndeath
    assert snap["online"] == [False]
    assert lo - 1 <= snap["sessions"][""] <= hi and lo - 1 <= snap["sessions"]["M1"] <= hi
    assert lo - 1 <= snap["stale"]["/Temperature"] <= hi
    assert lo - 1 <= snap["stale"]["M1/Speed"] <= hi
    assert snap["stale"]["M2/Count"] == host.ddeath_ts  # went stale with its device before


@pytest.mark.sparkplug(
    "tck-id-operational-behavior-edge-node-termination-host-action-ddeath-devices-tags-stale"
)
def test_tck_id_operational_behavior_edge_node_termination_host_action_ddeath_devices_offline(
    host: HostRecord,
) -> None:
    """After the DDEATH: the device offline and its metrics stale at the DDEATH's timestamp;
    the node and the other device untouched."""
    snap = host.after_ddeath
    assert snap["sessions"]["M2"] == host.ddeath_ts
    assert snap["stale"]["M2/Count"] == host.ddeath_ts
    assert snap["sessions"]["M1"] is None and snap["sessions"][""] is None
    assert snap["stale"]["M1/Speed"] is None and snap["online"] == [True]


# -- reordering, with a reorder timeout (workers of a shared subscription) ---------------------
@pytest.mark.backends("postgres")
@pytest.mark.sparkplug("tck-id-operational-behavior-host-reordering-start")
async def test_tck_id_operational_behavior_host_reordering_success(
    start_worker: WorkerFactory, mqtt_url: str, unique: str
) -> None:
    """With a reorder timeout: a seq that arrives late but within it asks for nothing; a seq
    that never comes is asked about (a rebirth) once the timeout has passed, not before."""
    group = f"O{unique}"
    wait_ms = 1_500
    t0 = now_ms()
    async with (
        start_worker(shared_group=f"g{unique}", reorder_wait_ms=wait_ms),
        MqttClient(parse_mqtt_url(mqtt_url), f"py-{unique}") as edge,
    ):
        await edge.subscribe(f"spBv1.0/{group}/NCMD/PY")

        async def send(seq: int, kind: str = "DDATA") -> None:
            metric = ps.Metric(
                timestamp=now_ms(), name=None, alias=1, datatype=DOUBLE, value=float(seq)
            )
            data = ps.DData(timestamp=now_ms(), seq=seq, metrics=(metric,))
            await edge.publish(f"spBv1.0/{group}/DDATA/PY/M1", data.encode(), qos=0)

        nbirth = ps.NBirth(
            timestamp=t0,
            seq=0,
            metrics=(ps.Metric(timestamp=t0, name="bdSeq", datatype=INT64, value=0),),
        )
        await edge.publish(f"spBv1.0/{group}/NBIRTH/PY", nbirth.encode(), qos=0)
        dbirth = ps.DBirth(
            timestamp=t0,
            seq=1,
            metrics=(ps.Metric(timestamp=t0, name="Speed", alias=1, datatype=DOUBLE, value=0.0),),
        )
        await edge.publish(f"spBv1.0/{group}/DBIRTH/PY/M1", dbirth.encode(), qos=0)
        for seq in (2, 4):
            await send(seq)
        await asyncio.sleep(0.5)
        await send(3)  # late, within the timeout
        for seq in (5, 6, 8):  # 7 never comes
            await send(seq)
        hole = time.monotonic()
        command = None
        for seq in range(9, 60):  # the node goes on; the host asks once the timeout is over
            try:
                command = await asyncio.wait_for(edge.next_message(), 0.2)
                break
            except TimeoutError:
                await send(seq)
        assert command is not None, "no rebirth request for the hole"
        asked_after = time.monotonic() - hole
        metrics = ps.NCmd.decode(command.payload).metrics
    assert [(m.name, m.value) for m in metrics] == [(REBIRTH, True)]  # one request: for 7
    assert asked_after >= wait_ms / 1000 - 0.3  # not before the timeout (3 was not asked about)
