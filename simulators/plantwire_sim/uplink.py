"""A site's uplink: the simulator relays its gateway's MQTT connection to the broker, so that
a scenario can cut it (``[[outages]] kind = "uplink"``).

While the uplink is down every relayed connection is closed and new ones are closed as soon
as they are accepted (the gateway sees its broker connection lost, then refused); the broker
sees the gateway's connection end and publishes its Will. Bytes are passed on unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class UplinkRelay:
    """Relays TCP connections from ``host``:``port`` (0: a free port) to the broker."""

    def __init__(self, site: str, host: str, broker_host: str, broker_port: int) -> None:
        self.site = site
        self.host = host
        self.port = 0
        self.broker = (broker_host, broker_port)
        self.down = False
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._relay, self.host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def url(self, broker_url: str) -> str:
        """``broker_url`` with this relay's address instead of the broker's."""
        parts = urlsplit(broker_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@" if auth else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}{self.host}:{self.port}"))

    def cut(self) -> None:
        """The uplink goes down: every relayed connection is closed."""
        self.down = True
        self.cuts += 1
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self.down = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.broker)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._open |= pair
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open -= pair
            for w in pair:
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
