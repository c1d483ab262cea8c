"""``plantwire platform admin create`` and ``plantwire platform person create``: the first
platform admin, and people, registered from the command line (the password is printed once and
stored hashed)."""

from __future__ import annotations

import argparse
from typing import Any

from plantwire_platform.accounts.roles import PERSON_ROLES, Binding, PersonRole
from plantwire_platform.command import Command, id_of


def add_parsers(sub: Any, command: Command) -> None:
    """The ``admin`` and ``person`` actions."""
    env_help = command.env_help

    def run(args: argparse.Namespace) -> int:
        from plantwire_platform.accounts.people import PersonError

        name = "admin create" if args.role == "platform_admin" else "person create"
        return command.run(args, name, _create, (PersonError,))

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


async def _create(conn: Any, args: argparse.Namespace) -> str:
    from plantwire_platform.accounts.people import create_person

    role: PersonRole = args.role
    binding = Binding(
        await id_of(conn, "enterprise", args.enterprise),
        await id_of(conn, "park", args.park),
        args.region,
    )
    password = await create_person(conn, args.username, role, binding, args.name)
    return (
        f"username={args.username}\npassword={password}\n"
        "(shown once; sign in with POST /auth/token grant_type=password)"
    )
