"""The browser tests' server harness (:func:`~tests.platform.console.browser.running`) stops a
server within its bound: a server whose shutdown hangs fails the test saying so, instead of
hanging the suite."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from plantwire_bus.mosquitto import free_port
from tests.platform.console.browser import CANCELLED_S, ServerHung, running


class Quiet(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the test."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def hanging_app(released: asyncio.Event) -> Any:
    """An ASGI app that answers ``ok`` and whose shutdown waits until ``released`` is set."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await released.wait()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


def server(app: Any, port: int) -> uvicorn.Server:
    return Quiet(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))


async def test_a_server_that_stops_is_stopped_without_error() -> None:
    released = asyncio.Event()
    released.set()
    port = free_port()
    started = time.monotonic()
    async with (
        running(server(hanging_app(released), port), stop_s=10),
        httpx.AsyncClient() as client,
    ):
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert time.monotonic() - started < 10
    with pytest.raises(httpx.ConnectError):  # it no longer listens
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_hung_stop_fails_within_its_bound() -> None:
    released = asyncio.Event()
    port = free_port()
    stop_s = 0.5
    with pytest.raises(ServerHung, match=r"did not stop within 0\.5 s .*; cancelled$"):
        async with running(server(hanging_app(released), port), stop_s=stop_s):
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            stopping = time.monotonic()
    waited = time.monotonic() - stopping
    assert stop_s <= waited < stop_s + CANCELLED_S
    released.set()  # the app's own lifespan task ends
    await asyncio.sleep(0.05)
