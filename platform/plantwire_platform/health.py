"""``/healthz``'s own database connection, so that it answers while every pooled connection
is busy with long requests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from plantwire_platform.connections import connect


class HealthProbe:
    """Checks the database over one dedicated connection, reopened when it breaks."""

    def __init__(self, database_url: str, timeout_s: float = 1.0) -> None:
        self.database_url = database_url
        self.timeout_s = timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def database(self) -> str:
        """``ok``, or why the database cannot be reached."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    if self._conn is None or self._conn.closed:
                        self._conn = await connect(
                            self.database_url, autocommit=True, application_name="plantwire-health"
                        )
                    await self._conn.execute("SELECT 1")
            except (TimeoutError, OSError, psycopg.Error) as exc:
                await self.close()
                return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            return "ok"

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
            self._conn = None
