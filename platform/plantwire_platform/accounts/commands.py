"""``plantwire platform admin create`` and ``plantwire platform person create``: the first
platform admin, and people, registered from the command line (the password is printed once and
stored hashed)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from plantwire_platform.accounts.roles import PERSON_ROLES, Binding, PersonRole
from plantwire_platform.settings import PlatformSettings

Settings = Callable[[argparse.Namespace], PlatformSettings | None]
WithDatabase = Callable[[str, PlatformSettings, Callable[[], Awaitable[Any]]], Any]


def add_parsers(sub: Any, env_help: str, settings: Settings, with_database: WithDatabase) -> None:
    """The ``admin`` and ``person`` actions; ``settings`` and ``with_database`` are the
    command's (one line on stderr for invalid settings or an unreachable database)."""

    def run(args: argparse.Namespace) -> int:
        return _create(args, settings, with_database)

    admin = sub.add_parser(
        "admin",
        help="create a platform admin (the first one, too)",
        description=f"Platform admins. {env_help}",
    )
    admin_sub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    create = admin_sub.add_parser(
        "create",
        help="create a platform admin and print the password once",
        description="Create a platform admin who signs in at POST /auth/token; the password is "
        f"printed once and stored hashed (Argon2id). {env_help}",
    )
    create.add_argument("username", nargs="?", default="admin", help="default: admin")
    create.add_argument("--name", default="", help="the person's name")
    create.set_defaults(func=run, role="platform_admin", enterprise=None, park=None, region=None)

    person = sub.add_parser(
        "person",
        help="create people who sign in (enterprise admins, viewers, analysts, authorities)",
        description=f"People of the platform. {env_help}",
    )
    person_sub = person.add_subparsers(dest="person_command", metavar="ACTION", required=True)
    create = person_sub.add_parser(
        "create",
        help="create a person and print the password once",
        description="Create a person who signs in at POST /auth/token. Enterprise roles "
        "(enterprise_admin, enterprise_viewer, chain_analyst: the analyst of the chains its "
        "enterprise leads) need --enterprise; a park_authority --park; a region_authority "
        "--region. The password is printed once and stored hashed (Argon2id). " + env_help,
    )
    create.add_argument("username")
    create.add_argument("--role", choices=PERSON_ROLES, required=True)
    create.add_argument("--enterprise", help="the enterprise's code or id")
    create.add_argument("--park", help="the park's code or id")
    create.add_argument("--region", help="the region's name, as in the registry")
    create.add_argument("--name", default="", help="the person's name")
    create.set_defaults(func=run)


async def _id_of(conn: Any, table: str, key: str | None) -> int | None:
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


def _create(args: argparse.Namespace, settings_of: Settings, with_database: WithDatabase) -> int:
    import psycopg

    from plantwire_platform.accounts.people import PersonError, create_person

    settings = settings_of(args)
    if settings is None:
        return 2
    role: PersonRole = args.role
    command = "admin create" if role == "platform_admin" else "person create"

    async def work() -> str:
        async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
            binding = Binding(
                await _id_of(conn, "enterprise", args.enterprise),
                await _id_of(conn, "park", args.park),
                args.region,
            )
            return await create_person(conn, args.username, role, binding, args.name)

    try:
        password = with_database(command, settings, work)
    except (PersonError, LookupError) as exc:
        print(f"plantwire platform {command}: {exc.args[0]}", file=sys.stderr)
        return 2
    if password is None:
        return 1
    print(
        f"username={args.username}\npassword={password}\n"
        "(shown once; sign in with POST /auth/token grant_type=password)"
    )
    return 0
