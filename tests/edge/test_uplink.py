"""The uplink: its session start, against a scripted broker connection (the primary host's
retained STATE, delivered right after the SUBACK, is not lost to the node's attachment), and
its reconnection to a real Mosquitto stopped and started again, on an accelerated clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from plantwire_bus.mosquitto import MosquittoProcess, start_mosquitto
from plantwire_bus.mqtt import BrokerAddress, Message, MqttClient, parse_mqtt_url
from plantwire_bus.payload import decode_payload
from plantwire_bus.topics import encode_state
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode
from plantwire_edge.uplink import MAX_BACKOFF_S
from plantwire_sim.clock import SimClock

from .conftest import running


class EagerBroker:
    """A connection whose broker sends the retained STATE the moment it is subscribed to,
    and lets every other task run before the SUBACK is seen (as a busy loop may)."""

    def __init__(self) -> None:
        self.address = BrokerAddress()
        self.connected = asyncio.Event()
        self.connected.set()
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.published: list[str] = []

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        if topic.startswith("spBv1.0/STATE/"):
            self.inbox.put_nowait(Message(topic, encode_state(True, 1), 1, True, 1))
        for _ in range(5):
            await asyncio.sleep(0)

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            yield await self.inbox.get()

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        self.published.append(topic.split("/")[2])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        await self.publish_nowait(topic, payload, qos, retain)

    async def disconnect(self, with_will: bool = False) -> None:
        self.connected.clear()


async def test_retained_state_right_after_the_suback_counts() -> None:
    config = EdgeConfig.model_validate(
        {
            "group_id": "G",
            "edge_node_id": "N",
            "primary_host_id": "host",
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
    node = EdgeNode(config)
    broker = EagerBroker()
    lost, halt = asyncio.Event(), asyncio.Event()
    session = asyncio.create_task(node.uplink._session(broker, lost, halt))  # type: ignore[arg-type]
    for _ in range(100):
        if node.host_online:
            break
        await asyncio.sleep(0.01)
    assert node.host_online, "the STATE taken before the node attached was forgotten"
    assert broker.published == ["NBIRTH"]
    halt.set()
    await asyncio.wait_for(session, 5)
    assert broker.published == ["NBIRTH", "NDEATH"] and not broker.connected.is_set()


LATENCY_WALL_S = 0.15
"""Wall time allowed for the test to see the broker listen and for the gateway to connect,
subscribe and publish its birth (a loaded machine: two busy cores)."""


@pytest.mark.parametrize("speed", [60, 600])
async def test_a_gateway_on_an_accelerated_clock_is_back_on_its_broker_within_simulated_seconds(
    private_mosquitto: MosquittoProcess, mqtt_url: str, unique: str, speed: int
) -> None:
    """On a simulation's clock at ``speed`` the gateway's reconnection back-off is in that
    clock's time: with the broker down long enough for three failed attempts, its NBIRTH on
    the restarted broker comes within MAX_BACKOFF_S simulated seconds (and the wall latency of
    a connection) of the broker listening again. In wall time the back-off after three
    failures was 2-4 wall s: 1,200-2,400 simulated s at 600x, 120-240 at 60x."""
    broker = private_mosquitto
    clock = SimClock(time.time_ns() // 1_000_000 - 3_600_000, speed=speed)
    group = f"UPL{unique}"
    cfg = EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "GW1",
            "mqtt_url": broker.url,
            "primary_host_id": "",
            "devices": [  # on the session's broker, which stays up
                {
                    "kind": "mqtt",
                    "device_id": "WS-01",
                    "broker_url": mqtt_url,
                    "topic": f"plant/{unique}/ws",
                    "fields": [{"metric": "Production/GoodCount", "path": "good"}],
                }
            ],
        }
    )
    # a persistent session: the broker keeps what is published while it reconnects
    probe = MqttClient(
        parse_mqtt_url(broker.url), f"probe-{unique}", clean_start=False, session_expiry=600
    )
    await probe.connect()
    await probe.subscribe(f"spBv1.0/{group}/NBIRTH/#")
    births: list[int] = []

    async def collect() -> None:
        async for message in probe.messages():
            births.append(decode_payload(message.payload).timestamp or 0)

    async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what} not within {timeout} s"
            await asyncio.sleep(0.001)

    async def listening(port: int) -> int:
        """The clock's time when ``port`` first accepts a connection."""
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.001)
                continue
            at = clock.now_ms()
            writer.close()
            return at

    collector = asyncio.create_task(collect())
    restarted: MosquittoProcess | None = None
    try:
        async with running(cfg, clock) as gateway:
            stats = gateway.node.stats
            await wait_for(lambda: len(births) == 1, "NBIRTH")
            broker.stop()
            failed = stats.connect_failures
            await wait_for(lambda: stats.connect_failures >= failed + 3, "three failed attempts")
            starting = clock.now_ms()
            seen = asyncio.create_task(listening(broker.port))
            restarted = await asyncio.to_thread(
                start_mosquitto, broker.log_path.parent, port=broker.port
            )
            listened = await seen
            await wait_for(lambda: len(births) == 2, "NBIRTH on the restarted broker")
    finally:
        collector.cancel()
        await probe.disconnect()
        if restarted is not None:
            restarted.stop()
    late_s = (births[1] - listened) / 1000
    allowed_s = MAX_BACKOFF_S + LATENCY_WALL_S * speed
    assert starting <= births[1] and late_s <= allowed_s, (
        f"born {late_s:+.1f} simulated s after the broker listened again at {speed}x "
        f"(allowed {allowed_s:g})"
    )
