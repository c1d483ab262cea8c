"""Subscribing to many topic filters and unsubscribing, against a real Mosquitto: what the
broker delivers afterwards is the truth, in MQTT 5.0 and 3.1.1."""

from __future__ import annotations

import asyncio

import pytest

from plantwire_bus import mqtt
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.topics import edge_node_subscriptions


async def received(client: MqttClient, quiet_s: float = 0.5) -> set[str]:
    """Topics delivered until ``quiet_s`` passes without a message."""
    topics: set[str] = set()
    while True:
        try:
            message = await asyncio.wait_for(client.next_message(), quiet_s)
        except TimeoutError:
            return topics
        topics.add(message.topic)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_many_filters_then_some_of_them_unsubscribed(
    protocol: str, mqtt_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "FILTERS_PER_PACKET", 7)  # several packets each way
    nodes = [f"N{i}" for i in range(20)]
    filters = [f for n in nodes for f in edge_node_subscriptions(f"G{unique}", n)]
    address = parse_mqtt_url(f"{mqtt_url}?protocol={protocol}")
    async with (
        MqttClient(address, f"sub-{unique}") as sub,
        MqttClient(parse_mqtt_url(mqtt_url), f"pub-{unique}") as pub,
    ):
        await sub.subscribe_all(filters, 1)

        async def publish_all() -> None:
            for n in [*nodes, "STRANGER"]:
                await pub.publish(f"spBv1.0/G{unique}/NDATA/{n}", b"x")
                await pub.publish(f"spBv1.0/G{unique}/DDATA/{n}/D", b"x")

        await publish_all()
        expected = {f"spBv1.0/G{unique}/{t}" for n in nodes for t in (f"NDATA/{n}", f"DDATA/{n}/D")}
        assert await received(sub) == expected
        gone = nodes[::2]
        await sub.unsubscribe(f for n in gone for f in edge_node_subscriptions(f"G{unique}", n))
        await publish_all()
        kept = {t for t in expected if t.split("/")[3] not in gone}
        assert await received(sub) == kept


async def test_an_unsubscribe_while_disconnected_is_sent_at_the_reconnect(
    mqtt_url: str, unique: str
) -> None:
    """A persistent session keeps its subscriptions over a lost connection: an unsubscribe
    asked for meanwhile is sent when the client is connected again."""
    address = parse_mqtt_url(mqtt_url)
    sub = MqttClient(address, f"sub-{unique}", clean_start=False, session_expiry=60)
    keep, drop = f"t/{unique}/keep", f"t/{unique}/drop"
    async with sub, MqttClient(address, f"pub-{unique}") as pub:
        await sub.subscribe_all([keep, drop], 1)
        sub.drop_connection()
        while sub.connected.is_set():
            await asyncio.sleep(0.01)
        with pytest.raises(mqtt.MqttError):  # not connected
            await sub.unsubscribe([drop])
        await asyncio.wait_for(sub.connected.wait(), 15)  # paho reconnects by itself
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the UNSUBSCRIBE follows the CONNACK
            await pub.publish(drop, b"x")
            await pub.publish(keep, b"x")
            if await received(sub) == {keep}:
                break
            assert asyncio.get_running_loop().time() < deadline
