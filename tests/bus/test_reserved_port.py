"""A port held with ``reserve_port``: its own servers get it (again after a restart), nobody
else can bind it meanwhile (the benches' port race, issue 13)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from plantwire_bus.mosquitto import find_mosquitto, reserve_port, start_mosquitto
from plantwire_bus.mqtt import MqttClient, parse_mqtt_url


def taken(port: int) -> bool:
    """Whether a plain bind (no SO_REUSEADDR, as a stranger's server would) is refused."""
    with socket.socket() as stranger:
        try:
            stranger.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


async def test_an_asyncio_server_gets_the_held_port_again_after_a_restart() -> None:
    held = reserve_port()
    port = held.getsockname()[1]
    try:
        assert taken(port)
        for _ in range(2):  # started, stopped, started again on the same port
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await reader.read() == b""  # accepted, then closed by the server
            writer.close()
            server.close()
            await server.wait_closed()
            assert taken(port)  # still held between the two
    finally:
        held.close()


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
async def test_mosquitto_killed_listens_again_on_the_held_port(tmp_path: Path) -> None:
    held = reserve_port()
    port = held.getsockname()[1]
    broker = start_mosquitto(tmp_path / "mosquitto", port=port)
    try:
        broker.kill()
        assert taken(port)
        broker = start_mosquitto(tmp_path / "mosquitto", port=port)
        client = MqttClient(parse_mqtt_url(broker.url), "held-port-probe")
        await client.connect()
        await client.disconnect()
    finally:
        broker.stop()
        held.close()
