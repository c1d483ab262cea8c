"""A site's uplink relay: bytes pass both ways unchanged; a cut closes every relayed connection
and refuses new ones (accepted, then closed) until the uplink is restored."""

from __future__ import annotations

import asyncio

import pytest

from plantwire_sim.uplink import UplinkRelay


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _roundtrip(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(1024), 5)
    finally:
        writer.close()


async def test_relay_passes_bytes_and_a_cut_closes_and_refuses() -> None:
    broker = await asyncio.start_server(_echo, "127.0.0.1", 0)
    relay = UplinkRelay("S1", "127.0.0.1", "127.0.0.1", broker.sockets[0].getsockname()[1])
    await relay.start()
    try:
        assert relay.url("mqtt://user:pw@10.0.0.9:1883") == f"mqtt://user:pw@127.0.0.1:{relay.port}"
        assert await _roundtrip(relay.port, b"\x10hello") == b"\x10hello"
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.read(4), 5) == b"ping"
        relay.cut()
        assert await asyncio.wait_for(reader.read(4), 5) == b""  # the open one is closed
        writer.close()
        with pytest.raises(ConnectionError):  # a new one is closed at once
            data = await _roundtrip(relay.port, b"again")
            if not data:
                raise ConnectionResetError("closed")
        relay.restore()
        assert await _roundtrip(relay.port, b"back") == b"back"
        assert relay.cuts == 1
    finally:
        await relay.stop()
        broker.close()
        await broker.wait_closed()
