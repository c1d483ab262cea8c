"""People: identities that sign in with a password. A person is a row of ``partner_client``
(role, enterprise or park or region, status, token epoch: what every token is checked against)
with an Argon2 password hash in ``account_password``."""

from __future__ import annotations

import re
from typing import Any

from psycopg import AsyncConnection
from pydantic import BaseModel

from plantwire_platform.accounts import passwords
from plantwire_platform.accounts.roles import Binding, PersonRole, binding_problem
from plantwire_platform.partner.tokens import Caller, Role
from plantwire_platform.translation import Text

USERNAME = r"^[A-Za-z0-9_.@-]{3,64}$"
_USERNAME = re.compile(USERNAME)


class PersonError(ValueError):
    """A person that cannot be created as asked (one line, naming the problem); ``text`` is it
    for the API's catalogue, worded in the request's language."""

    def __init__(self, text: Text) -> None:
        super().__init__(str(text))
        self.text = text


class Person(BaseModel):
    """A person as administrators see them (never the password)."""

    username: str
    role: Role
    enterprise_id: int | None
    park_id: int | None
    region: str | None
    name: str
    disabled: bool


async def create_person(
    conn: AsyncConnection[Any],
    username: str,
    role: PersonRole,
    binding: Binding,
    name: str = "",
    password: str | None = None,
) -> str:
    """Register a person (uncommitted inside an open transaction, else committed); returns the
    password, generated unless given: shown once, stored hashed. Raises :class:`PersonError`."""
    if not _USERNAME.match(username):
        raise PersonError(Text("person.username", username=username))
    problem = binding_problem(role, binding) or (password and passwords.password_problem(password))
    if problem:
        raise PersonError(problem)
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM partner_client WHERE id = %s),"
        " (SELECT count(*) FROM enterprise WHERE id = %s),"
        " (SELECT count(*) FROM park WHERE id = %s)",
        (username, binding.enterprise_id, binding.park_id),
    )
    taken, ent, park = await cur.fetchone() or (0, 0, 0)
    if taken:
        raise PersonError(Text("person.taken", username=username))
    if binding.enterprise_id is not None and not ent:
        raise PersonError(Text("person.no_enterprise", id=binding.enterprise_id))
    if binding.park_id is not None and not park:
        raise PersonError(Text("person.no_park", id=binding.park_id))
    password = password or passwords.new_password()
    digest = await passwords.hashed(password)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO partner_client (id, enterprise_id, role, name, park_id, region)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (username, binding.enterprise_id, role, name, binding.park_id, binding.region),
        )
        await conn.execute(
            "INSERT INTO account_password (client_id, hash) VALUES (%s, %s)", (username, digest)
        )
    return password


async def authenticate(conn: AsyncConnection[Any], username: str, password: str) -> Caller | None:
    """The person if ``password`` is theirs and they are enabled (an unknown person costs one
    Argon2 verification too: no timing oracle)."""
    cur = await conn.execute(
        "SELECT c.enterprise_id, c.role, c.token_epoch, p.hash FROM partner_client c"
        " JOIN account_password p ON p.client_id = c.id"
        " WHERE c.id = %s AND c.disabled_at IS NULL",
        (username,),
    )
    row = await cur.fetchone()
    if not await passwords.matches(password, row[3] if row else None) or row is None:
        return None
    return Caller(username, row[0], row[1], row[2])


async def set_password(conn: AsyncConnection[Any], username: str, password: str) -> None:
    """Replace a person's password and revoke the tokens they hold (uncommitted)."""
    problem = passwords.password_problem(password)
    if problem:
        raise PersonError(problem)
    digest = await passwords.hashed(password)
    await conn.execute(
        "UPDATE account_password SET hash = %s, changed_at = now() WHERE client_id = %s",
        (digest, username),
    )
    await conn.execute(
        "UPDATE partner_client SET token_epoch = token_epoch + 1 WHERE id = %s", (username,)
    )


async def binding_of(conn: AsyncConnection[Any], client_id: str) -> Binding:
    """What the identity's role is bound to now (read on every call: a token carries no
    rights)."""
    cur = await conn.execute(
        "SELECT enterprise_id, park_id, region FROM partner_client WHERE id = %s", (client_id,)
    )
    row = await cur.fetchone()
    return Binding(*row) if row else Binding()


_PEOPLE = (
    "SELECT c.id, c.role, c.enterprise_id, c.park_id, c.region, c.name,"
    " c.disabled_at IS NOT NULL FROM partner_client c"
    " JOIN account_password p ON p.client_id = c.id"
)


async def get_person(conn: AsyncConnection[Any], username: str) -> Person | None:
    cur = await conn.execute(_PEOPLE + " WHERE c.id = %s", (username,))
    row = await cur.fetchone()
    return Person(**dict(zip(Person.model_fields, row, strict=True))) if row else None


async def people_of(conn: AsyncConnection[Any], enterprise_id: int | None) -> list[Person]:
    """The people of the enterprise (everyone's when None), by username."""
    cur = await conn.execute(
        _PEOPLE + " WHERE %(e)s::bigint IS NULL OR c.enterprise_id = %(e)s ORDER BY c.id",
        {"e": enterprise_id},
    )
    return [
        Person(**dict(zip(Person.model_fields, row, strict=True))) for row in await cur.fetchall()
    ]
