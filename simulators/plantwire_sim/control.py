"""Control port of ``sim run``: inject faults and read the simulated clock while running.

A plain TCP port (localhost by default) speaking JSON Lines: one request object per line, one
response object per line. Try it with ``nc 127.0.0.1 4999``::

    {"op": "fault", "machine": "CNC-02", "fault": "freeze", "seconds": 30}
    {"ok": true, "fault": {"kind": "fault", "machine": "CNC-02", "fault": "freeze", ...}}
    {"op": "status"}
    {"ok": true, "sim_ms": 1741000123456, "sim_time": "2025-03-03T11:08:43.456Z", ...}

``fault`` takes ``machine``, ``fault`` (a kind of :mod:`plantwire_sim.faults`), ``seconds``
(simulated, default 60) and, for ``alarm_storm``, ``rate_per_s``. ``plantwire sim fault`` is
the command-line client. ``go`` starts simulated time in a run started with ``--hold-start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from .factory import Factory
from .faults import FAULT_PROTOCOLS
from .mqtt_device import iso_ms

MAX_LINE = 64 * 1024


async def serve_control(factory: Factory, host: str, port: int) -> asyncio.Server:
    """Start answering control requests for ``factory``; the caller closes the server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                response = await answer(factory, line)
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_LINE)


async def answer(factory: Factory, line: bytes) -> dict[str, Any]:
    """The response to one request line."""
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ValueError("a request is a JSON object")
        op = request.get("op")
        if op == "fault":
            record = await factory.fault(
                str(request.get("machine", "")),
                str(request.get("fault", "")),
                float(request.get("seconds", 60)),
                float(request.get("rate_per_s", 10)),
            )
            return {"ok": True, "fault": record.to_json()}
        if op == "status":
            return {"ok": True, **status(factory)}
        if op == "go":  # a run started held (--hold-start): simulated time starts now
            factory.go.set()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}: fault, status or go")
    except (ValueError, TypeError) as exc:
        return {"ok": False, "error": str(exc)}


def status(factory: Factory) -> dict[str, Any]:
    now = factory.clock.now_ms()
    return {
        "sim_ms": now,
        "sim_time": iso_ms(now),
        "speed": factory.clock.speed,
        # enough to run a clock in step with this one elsewhere (e.g. an edge gateway's)
        "clock": factory.clock.state(),
        "lag_s": round(factory.lag_s, 3),
        "live": factory.clock.live(),
        "finished": factory.finished.is_set(),
        "truth_records": factory.truth.count,
        "held": not factory.go.is_set(),
        # site -> broker URL its gateway connects to, through the relay its outages cut
        "uplinks": {
            site: relay.url(factory.mqtt_url or "mqtt://127.0.0.1")
            for site, relay in factory.uplinks.items()
        },
        "machines": {
            code: {
                "protocol": p.machine.protocol,
                "faults": sorted(p.endpoint.faults.started),
                "applicable": sorted(
                    k for k, v in FAULT_PROTOCOLS.items() if p.machine.protocol in v
                ),
                **p.endpoint.describe(),
            }
            for code, p in factory.players.items()
        },
    }


async def request(
    host: str, port: int, body: dict[str, Any], timeout: float = 10.0
) -> dict[str, Any]:
    """Send one request to a control port and return the response."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(json.dumps(body).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not line:
        raise ConnectionError(f"control port {host}:{port} closed the connection")
    response = json.loads(line)
    if not isinstance(response, dict):
        raise ValueError("malformed response from the control port")
    return response
