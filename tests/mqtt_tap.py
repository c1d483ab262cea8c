"""A tap on the wire between one MQTT client and the broker: every byte is passed on
unchanged, and the packets the client sends (CONNECT with its Will, SUBSCRIBE, PUBLISH,
DISCONNECT) are read off the stream with their flags as sent, which a subscriber cannot see
(a broker lowers QoS to the subscription's and clears retain on live messages).

Written from the MQTT 5.0 and 3.1.1 specifications for the Sparkplug requirement tests; it
imports no MQTT library, so it is independent of the one plantwire uses."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

CONNECT, PUBLISH, SUBSCRIBE, DISCONNECT = 1, 3, 8, 14
DISCONNECT_WITH_WILL = 0x04  # MQTT 5.0 reason code 'Disconnect with Will Message'

# MQTT 5.0 property identifiers by the kind of value they carry (MQTT 5.0, 2.2.2.2)
_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_U16 = {0x13, 0x21, 0x22, 0x23}
_U32 = {0x02, 0x11, 0x18, 0x27}
_VARINT = {0x0B}
_STRING = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BINARY = {0x09, 0x16}
_PAIR = {0x26}
SESSION_EXPIRY = 0x11


@dataclass(frozen=True)
class WillMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Packet:
    """One packet a client sent, as it was on the wire."""

    connection: int  # which of the client's connections through the tap, from 0
    kind: int  # CONNECT, PUBLISH, SUBSCRIBE, DISCONNECT, or another control packet type
    at: float  # time.monotonic() when read
    protocol: int = 0  # CONNECT: 5 or 4 (3.1.1)
    clean_start: bool = False
    session_expiry: int = 0
    will: WillMessage | None = None
    topic: str = ""  # PUBLISH
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    filters: tuple[str, ...] = ()  # SUBSCRIBE
    reason: int = 0  # DISCONNECT (MQTT 5.0; 0 when absent)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        if len(out) != n:
            raise ValueError("packet shorter than its fields")
        self.at += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        return self.binary().decode("utf-8")

    def properties(self) -> dict[int, object]:
        end = self.varint() + self.at
        out: dict[int, object] = {}
        while self.at < end:
            ident = self.varint()
            value: object
            if ident in _BYTE:
                value = self.u8()
            elif ident in _U16:
                value = self.u16()
            elif ident in _U32:
                value = self.u32()
            elif ident in _VARINT:
                value = self.varint()
            elif ident in _STRING:
                value = self.string()
            elif ident in _BINARY:
                value = self.binary()
            elif ident in _PAIR:
                value = (self.string(), self.string())
            else:
                raise ValueError(f"unknown MQTT property {ident:#x}")
            out[ident] = value
        return out

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)


def parse_packet(first: int, body: bytes, protocol: int, connection: int) -> Packet:
    """One client-to-broker packet; ``protocol`` is the level its connection's CONNECT named."""
    kind, flags, r = first >> 4, first & 0x0F, _Reader(body)
    now = time.monotonic()
    if kind == CONNECT:
        r.string()  # "MQTT"
        level = r.u8()
        connect_flags = r.u8()
        r.u16()  # keep-alive
        props = r.properties() if level == 5 else {}
        r.string()  # client id
        will = None
        if connect_flags & 0x04:
            if level == 5:
                r.properties()
            topic = r.string()
            will = WillMessage(
                topic, r.binary(), (connect_flags >> 3) & 3, bool(connect_flags & 32)
            )
        expiry = props.get(SESSION_EXPIRY, 0)
        return Packet(
            connection,
            kind,
            now,
            protocol=level,
            clean_start=bool(connect_flags & 0x02),
            session_expiry=expiry if isinstance(expiry, int) else 0,
            will=will,
        )
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        topic = r.string()
        if qos:
            r.u16()
        if protocol == 5:
            r.properties()
        return Packet(
            connection, kind, now, topic=topic, payload=r.rest(), qos=qos, retain=bool(flags & 1)
        )
    if kind == SUBSCRIBE:
        r.u16()
        if protocol == 5:
            r.properties()
        filters = []
        while r.at < len(body):
            filters.append(r.string())
            r.u8()
        return Packet(connection, kind, now, filters=tuple(filters))
    if kind == DISCONNECT:
        return Packet(connection, kind, now, reason=r.u8() if body else 0)
    return Packet(connection, kind, now)


@dataclass
class Tap:
    """Where the client connects instead of the broker, and what it sent there. A packet for
    which ``drop`` says True is recorded but not passed on (a QoS 0 message lost on the way)."""

    url: str
    packets: list[Packet] = field(default_factory=list)
    drop: Callable[[Packet], bool] = lambda packet: False
    dropped: list[Packet] = field(default_factory=list)

    def published(self, kind: str | None = None) -> list[Packet]:
        """The client's PUBLISH packets, those of one Sparkplug message type if given."""
        return [
            p
            for p in self.packets
            if p.kind == PUBLISH and (kind is None or _message_type(p.topic) == kind)
        ]

    def of(self, kind: int) -> list[Packet]:
        return [p for p in self.packets if p.kind == kind]


def _message_type(topic: str) -> str:
    parts = topic.split("/")
    return parts[1] if parts[1] == "STATE" else parts[2] if len(parts) > 2 else ""


async def _read_packet(reader: asyncio.StreamReader) -> tuple[bytes, int, bytes]:
    """(raw bytes, first byte, body) of the next packet."""
    head = await reader.readexactly(1)
    length, shift, raw_length = 0, 0, b""
    while True:
        byte = await reader.readexactly(1)
        raw_length += byte
        length |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            break
        shift += 7
    body = await reader.readexactly(length)
    return head + raw_length + body, head[0], body


@asynccontextmanager
async def mqtt_tap(broker_url: str) -> AsyncIterator[Tap]:
    """A tap in front of the (plain TCP) broker at ``broker_url``; ``tap.url`` is the same URL
    (login included) pointing at the tap."""
    target = urlsplit(broker_url)
    host, port = target.hostname or "127.0.0.1", target.port or 1883
    connections = 0
    tasks: set[asyncio.Task[None]] = set()
    tap = Tap(url="")

    async def pipe_client(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        protocol = 5
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                raw, first, body = await _read_packet(reader)
                packet = parse_packet(first, body, protocol, number)
                if packet.kind == CONNECT:
                    protocol = packet.protocol
                tap.packets.append(packet)
                if packet.kind == PUBLISH and packet.qos == 0 and tap.drop(packet):
                    tap.dropped.append(packet)
                    continue
                writer.write(raw)
                await writer.drain()
        writer.close()

    async def pipe_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        number, connections = connections, connections + 1
        try:
            broker_reader, broker_writer = await asyncio.open_connection(host, port)
        except OSError:  # the broker is away: what the client sent is still recorded
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                _, first, body = await asyncio.wait_for(_read_packet(client_reader), 5)
                tap.packets.append(parse_packet(first, body, 5, number))
            client_writer.close()
            return
        both = [
            asyncio.ensure_future(pipe_client(client_reader, broker_writer, number)),
            asyncio.ensure_future(pipe_broker(broker_reader, client_writer)),
        ]
        # either side closing closes the other, as a direct connection would
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        broker_writer.close()
        client_writer.close()
        await asyncio.gather(*both, return_exceptions=True)

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(serve(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0)
    tap_port = server.sockets[0].getsockname()[1]
    netloc = target.netloc.rpartition("@")
    tap.url = urlunsplit(target._replace(netloc=f"{netloc[0]}{netloc[1]}127.0.0.1:{tap_port}"))
    try:
        yield tap
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
