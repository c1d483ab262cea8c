"""What the ``plantwire platform`` actions of the platform's rooms share: the settings and the
database the command line gives them (:class:`Command`), one action run against the database
with its refusal said in one line (:meth:`Command.run`), and an entry found by its code or id
(:func:`id_of`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Settings = Callable[[argparse.Namespace], Any]
"""The process's settings for the parsed arguments, or None (invalid: said on stderr)."""
WithDatabase = Callable[[str, Any, Callable[[], Awaitable[Any]]], Any]
"""Run the work; an unreachable database ends in one line on stderr and None."""
Action = Callable[[Any, argparse.Namespace], Awaitable[str]]
"""An action on a database connection: what it prints."""


@dataclass(frozen=True, slots=True)
class Command:
    """The command line's help on configuration, settings, database and timestamps."""

    env_help: str
    settings: Settings
    with_database: WithDatabase
    timestamp: Callable[[str], Any]

    def run(
        self,
        args: argparse.Namespace,
        name: str,
        action: Action,
        refusals: tuple[type[Exception], ...] = (),
    ) -> int:
        """Run ``action`` on a connection and print what it says: 0; invalid settings or one
        of ``refusals`` (said in one line): 2; no database: 1."""
        from plantwire_platform.connections import connect

        settings = self.settings(args)
        if settings is None:
            return 2

        async def work() -> str:
            async with await connect(settings.database_url) as conn:
                return await action(conn, args)

        caught: tuple[type[Exception], ...] = (LookupError, *refusals)
        try:
            said = self.with_database(name, settings, work)
        except caught as exc:
            print(f"plantwire platform {name}: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 2
        if said is None:
            return 1
        print(said)
        return 0


async def id_of(conn: Any, table: str, key: str | None) -> int | None:
    """The id of the ``table`` entry (enterprise, park) whose code, else id, is ``key``; raises
    LookupError naming it if there is none."""
    if key is None:
        return None
    cur = await conn.execute(
        f"SELECT id FROM {table} WHERE code = %s OR id::text = %s ORDER BY code = %s DESC",
        (key, key, key),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no {table} {key!r}")
    return int(row[0])
