"""The uplink's session start, against a scripted broker connection: the primary host's
retained STATE, delivered right after the SUBACK, is not lost to the node's attachment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from plantwire_bus.mqtt import BrokerAddress, Message
from plantwire_bus.topics import encode_state
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode


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
