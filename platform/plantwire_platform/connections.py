"""The platform's database connections, all in one session time zone.

Every connection the platform opens is made here (:func:`connect`, and :func:`pool` for the
API's and the partner interface's pools), and its session's ``TimeZone`` is UTC whatever the
server's, the database's or the role's default and whatever ``PGTZ`` the process was started
with: every time psycopg reads comes back in UTC, and every time the SQL truncates, casts or
prints (``date_trunc``, ``::date``, a ``timestamptz`` in JSON) is a UTC one. What is local to a
plant (its shifts, days, buckets) is computed from its site's zone by name, never from the
session's (docs/architecture.md, "Times").
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

SESSION_ZONE = "UTC"
"""The ``TimeZone`` of every platform connection's session."""


def session_options(database_url: str, options: str = "") -> str:
    """The server options of a platform connection: the URL's own ``options`` (a connection's
    ``options`` argument would replace them), the session's zone, then ``options``."""
    own = psycopg.conninfo.conninfo_to_dict(database_url).get("options") or ""
    return " ".join(o for o in (str(own), f"-c TimeZone={SESSION_ZONE}", options) if o)


async def in_session_zone(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set the session's zone where the startup options could not: libpq sends ``PGTZ`` from
    the environment after the options, and it wins (a round trip only then). Also the
    ``configure`` of :func:`pool`."""
    if conn.info.parameter_status("TimeZone") != SESSION_ZONE:
        await conn.execute("SELECT set_config('TimeZone', %s, false)", (SESSION_ZONE,))
        if not conn.autocommit:
            await conn.commit()


async def connect(
    database_url: str, *, options: str = "", **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    """A connection to ``database_url`` whose session is in UTC; ``options`` (server options)
    and ``kwargs`` (autocommit, application_name, connect_timeout...) as psycopg takes them."""
    conn = await psycopg.AsyncConnection.connect(
        database_url, options=session_options(database_url, options), **kwargs
    )
    try:
        await in_session_zone(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


def pool(
    database_url: str, *, options: str = "", autocommit: bool = False, **kwargs: Any
) -> AsyncConnectionPool:
    """A pool of connections like :func:`connect`'s (``kwargs``: the pool's own arguments)."""
    return AsyncConnectionPool(
        database_url,
        kwargs={"autocommit": autocommit, "options": session_options(database_url, options)},
        configure=in_session_zone,
        **kwargs,
    )
