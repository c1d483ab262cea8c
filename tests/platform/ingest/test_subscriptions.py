"""The ingest subscribes to the registered edge nodes' topics and follows the registry while it
runs (issue 12): a gateway that enters the registry is read without a restart, one that leaves
it is no longer delivered to the worker at all."""

from __future__ import annotations

import asyncio
import time

import psycopg

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, decode_payload, encode_payload
from plantwire_platform.ingest.admission import Roster
from plantwire_platform.ingest.subscriptions import Subscriptions
from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry

from .test_admission import REGISTRY, refusals, taken
from .test_worker import WorkerFactory, query, start_worker

__all__ = ["start_worker"]  # the fixture


def births(ts: int) -> list[tuple[str, bytes]]:
    """An NBIRTH and the DBIRTH of CNC-01 with one metric, Speed (alias 1)."""
    bd = Metric(name="bdSeq", datatype=DataType.Int64, value=0)
    speed = Metric(name="Speed", alias=1, datatype=DataType.Double, value=0.5)
    return [
        ("NBIRTH/{}", encode_payload(Payload(timestamp=ts, seq=0, metrics=(bd,)))),
        ("DBIRTH/{}/CNC-01", encode_payload(Payload(timestamp=ts, seq=1, metrics=(speed,)))),
    ]


def data(value: float, seq: int) -> bytes:
    ts = time.time_ns() // 1_000_000
    speed = Metric(alias=1, datatype=DataType.Double, value=value, timestamp=ts)
    return encode_payload(Payload(timestamp=ts, seq=seq % 256, metrics=(speed,)))


async def stored(database_url: str, node: str) -> set[float]:
    rows = await query(
        database_url,
        "SELECT t.value FROM sample_num t JOIN series s ON s.id = t.series_id"
        f" WHERE s.edge_node_id = '{node}' AND s.metric = 'Speed'",
    )
    return {r[0] for r in rows}


async def test_a_gateway_entering_and_leaving_the_registry(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    """Site S1's gateway GW1 is replaced by GW9 while the worker runs: GW9, unknown at first,
    is read after the registry names it (asked for a rebirth, its data stored on S1's
    machine); GW1's messages after that never reach the worker."""
    group = f"S{unique}"
    document = REGISTRY.format(group=group)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(conn, parse_registry(document))
    address = parse_mqtt_url(mqtt_url)
    topic = f"spBv1.0/{group}/{{}}"
    async with (
        start_worker(unregistered_nodes="refuse", registry_refresh_s=0.2) as worker,
        MqttClient(address, f"gw1-{unique}") as gw1,
        MqttClient(address, f"gw9-{unique}") as gw9,
    ):
        await gw9.subscribe(topic.format("NCMD/GW9"))
        now = time.time_ns() // 1_000_000 - 1000
        for kind, payload in births(now):
            await gw1.publish(topic.format(kind.format("GW1")), payload)
            await gw9.publish(topic.format(kind.format("GW9")), payload)
        await gw9.publish(topic.format("DDATA/GW9/CNC-01"), data(9.0, 2))
        await gw1.publish(topic.format("DDATA/GW1/CNC-01"), data(1.0, 2))  # the broker has
        # routed GW9's messages before it takes this one
        deadline = time.monotonic() + 15
        while await stored(database_url, "GW1") != {0.5, 1.0}:
            assert time.monotonic() < deadline, await stored(database_url, "GW1")
            await asyncio.sleep(0.05)
        received = taken(worker)
        assert received == 3  # GW1's; nothing of GW9, unregistered, reached the worker

        # the registry: S1 is read by GW9 now
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await import_registry(conn, parse_registry(document.replace('"GW1"', '"GW9"', 1)))
        seq = 3
        deadline = time.monotonic() + 15
        while not await stored(database_url, "GW9"):  # as a gateway does: data, and births
            assert time.monotonic() < deadline, "GW9 never read"  # when asked for them
            await gw9.publish(topic.format("DDATA/GW9/CNC-01"), data(9.0 + seq, seq))
            seq += 1
            try:
                command = await asyncio.wait_for(gw9.next_message(), 0.2)
            except TimeoutError:
                continue
            assert [m.name for m in decode_payload(command.payload).metrics] == [
                "Node Control/Rebirth"
            ]
            for kind, payload in births(time.time_ns() // 1_000_000):
                await gw9.publish(topic.format(kind.format("GW9")), payload)
                seq = 2
        gw9_before = taken(worker)

        # GW1, out of the registry, is no longer delivered: the worker gets GW9's message
        # sent after it and nothing of GW1's
        await gw1.publish(topic.format("DDATA/GW1/CNC-01"), data(2.0, 3))
        await gw1.publish(topic.format("NBIRTH/GW1"), births(now)[0][1])
        await gw9.publish(topic.format("DDATA/GW9/CNC-01"), data(99.0, seq))
        deadline = time.monotonic() + 15
        while 99.0 not in await stored(database_url, "GW9"):
            assert time.monotonic() < deadline, await stored(database_url, "GW9")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert taken(worker) == gw9_before + 1
    assert await stored(database_url, "GW1") == {0.5, 1.0}
    assert refusals(worker) == {}
    bound = await query(
        database_url,
        "SELECT s.edge_node_id, e.code FROM series s JOIN equipment e ON e.id = s.equipment_id"
        f" WHERE s.group_id = '{group}' AND s.metric = 'Speed' ORDER BY 1",
    )
    assert bound == [("GW1", "CNC-01"), ("GW9", "CNC-01")]  # S1's machine, read by each


async def test_a_gateway_removed_while_the_worker_was_stopped(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    """The worker's persistent session keeps the filters of its last life: GW2, which sent a
    birth then and has left the registry since, is unsubscribed from when the worker starts
    again, so its messages no longer reach it; GW1's still do."""
    group = f"R{unique}"
    document = REGISTRY.format(group=group)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(conn, parse_registry(document))
    address = parse_mqtt_url(mqtt_url)
    topic = f"spBv1.0/{group}/{{}}"
    now = time.time_ns() // 1_000_000 - 1000
    async with (
        MqttClient(address, f"gw1-{unique}") as gw1,
        MqttClient(address, f"gw2-{unique}") as gw2,
    ):
        async with start_worker(unregistered_nodes="refuse"):
            for kind, payload in births(now):
                await gw1.publish(topic.format(kind.format("GW1")), payload)
            await gw2.publish(topic.format("NBIRTH/GW2"), births(now)[0][1])
            deadline = time.monotonic() + 15
            gw2_node = (
                f"SELECT 1 FROM sparkplug_node WHERE group_id = '{group}' AND edge_node_id = 'GW2'"
            )
            while await query(database_url, gw2_node) == []:
                assert time.monotonic() < deadline, "GW2's birth not stored"
                await asyncio.sleep(0.05)
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await import_registry(conn, parse_registry(document.replace('"GW2"', '"GW3"', 1)))
        async with start_worker(unregistered_nodes="refuse") as worker:  # the same session
            await gw2.publish(topic.format("NDATA/GW2"), data(2.0, 1))
            await gw1.publish(topic.format("DDATA/GW1/CNC-01"), data(1.0, 2))
            deadline = time.monotonic() + 15
            while await stored(database_url, "GW1") != {0.5, 1.0}:
                assert time.monotonic() < deadline, await stored(database_url, "GW1")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            assert taken(worker) == 1  # GW1's data; GW2's, sent before it, never came
            assert refusals(worker) == {}


async def test_a_registry_change_under_way_when_a_worker_leaves_its_group_subscribes_nothing(
    mqtt_url: str, unique: str
) -> None:
    """A worker of a shared group leaves it (a graceful stop) while following a registry change
    (GW1 replaced by GW2: the UNSUBSCRIBE of GW1's filters sent, its UNSUBACK awaited): the
    change's SUBSCRIBE of GW2's filters is not sent after the leave, so the broker hands the
    worker nothing of either node. A message on its own STATE topic, published after both
    nodes' births, is the first it gets."""
    address = parse_mqtt_url(mqtt_url)
    group, own = f"L{unique}", f"spBv1.0/STATE/leave-{unique}"
    async with (
        MqttClient(address, f"ingest-{unique}") as client,
        MqttClient(address, f"gw-{unique}") as gateway,
    ):
        subscriptions = Subscriptions(
            client, own, qos=1, shared_group=f"g{unique}", everything=False
        )
        await subscriptions.start(Roster({(group, "GW1"): frozenset()}), persistent=False)
        following = asyncio.ensure_future(
            subscriptions.follow(Roster({(group, "GW2"): frozenset()}))
        )
        await asyncio.sleep(0)  # follow() waits for the UNSUBACK of GW1's filters
        assert not following.done()
        await subscriptions.leave()
        await following
        for node in ("GW1", "GW2"):
            await gateway.publish(f"spBv1.0/{group}/NBIRTH/{node}", b"birth", qos=1)
        await gateway.publish(own, b"last", qos=1)
        first = await asyncio.wait_for(client.next_message(), 10)
        assert (first.topic, first.payload) == (own, b"last")
