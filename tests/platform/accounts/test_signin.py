"""People sign in with a password (OAuth2 password flow at ``/auth/token``) on a real
PostgreSQL; their tokens are verified by the partner interface's token verification and every
sign-in is audited in its chain."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from plantwire_platform.accounts.roles import Binding, binding_problem
from plantwire_platform.server import create_app
from tests.platform.identities import (
    audited,
    enterprise,
    person,
    register,
    secured,
    served,
    sign_in,
)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """The API in-process, with one enterprise (its id beside the client)."""
    acme = enterprise(database_url, "ACME", "91110000000000001X")
    async with served(database_url) as client:
        yield client, acme


async def test_a_person_signs_in_and_their_token_is_checked_like_a_clients(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, acme = api
    password = await register(database_url, "ana@acme", "enterprise_admin", acme)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT hash FROM account_password WHERE client_id = 'ana@acme'"
        ).fetchone()
    assert row is not None and row[0].startswith("$argon2id$") and password not in row[0]

    wrong = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "ana@acme", "password": password + "x"},
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_grant")
    unknown = await client.post(
        "/auth/token", data={"grant_type": "password", "username": "nobody", "password": "p" * 12}
    )
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_grant")
    grant = await client.post(
        "/auth/token", data={"grant_type": "client_credentials", "username": "ana@acme"}
    )
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")

    headers = await sign_in(client, "ana@acme", password)
    me = await client.get("/partner/v1/clients/ana@acme", headers=headers)
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["enterprise_id"]) == ("enterprise_admin", acme)

    # the same verification as a client's: disabling the person stops the token at once
    admin = await person(client, database_url, "root", "platform_admin")
    off = await client.post("/partner/v1/clients/ana@acme/disable", headers=admin)
    assert off.status_code == 200, off.text
    after = await client.get("/partner/v1/clients/ana@acme", headers=headers)
    assert (after.status_code, after.json()["error"]) == (401, "invalid_token")
    again = await client.post(
        "/auth/token", data={"grant_type": "password", "username": "ana@acme", "password": password}
    )
    assert again.status_code == 401

    assert audited(database_url, "person.sign_in") == [
        ("ana@acme", "denied", "invalid_grant", 401),
        ("nobody", "denied", "invalid_grant", 401),
        ("ana@acme", "denied", "unsupported_grant_type", 400),
        ("ana@acme", "allowed", "", 200),
        ("root", "allowed", "", 200),
        ("ana@acme", "denied", "invalid_grant", 401),
    ]


async def test_roles_the_partner_interface_does_not_serve_are_refused_there(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, acme = api
    viewer = await person(client, database_url, "vic", "enterprise_viewer", acme)
    for method, path in [
        ("GET", "/partner/v1/catalog"),
        ("POST", "/partner/v1/clients"),
        ("GET", "/partner/v1/clients/vic"),
    ]:
        got = await client.request(method, path, headers=viewer, json={})
        assert (got.status_code, got.json()["error"]) == (403, "role_forbidden"), path
    analyst = await person(client, database_url, "ann", "chain_analyst", acme)
    made = await client.post(
        "/partner/v1/clients",
        headers=analyst,
        json={"client_id": "sneaky", "role": "platform_admin"},
    )
    assert (made.status_code, made.json()["error"]) == (403, "role_forbidden")
    catalog = await client.get("/partner/v1/catalog", headers=analyst)
    assert catalog.status_code == 200


def test_admin_create_prints_the_password_once_and_it_signs_in(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    cli = [sys.executable, "-m", "plantwire.cli", "platform"]
    made = subprocess.run(
        [*cli, "admin", "create"], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    fields = dict(line.split("=", 1) for line in made.stdout.splitlines() if "=" in line)
    assert fields["username"] == "admin" and len(fields["password"]) >= 20
    twice = subprocess.run(
        [*cli, "admin", "create"], env=env, capture_output=True, text=True, timeout=60
    )
    assert twice.returncode == 2
    assert twice.stderr.strip() == "plantwire platform admin create: username 'admin' is taken"
    bad = subprocess.run(
        [*cli, "person", "create", "eve", "--role", "enterprise_viewer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "plantwire platform person create: role enterprise_viewer needs its enterprise",
    )

    async def check() -> str:
        app = create_app(secured(database_url))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            headers = await sign_in(client, "admin", fields["password"])
            me = await client.get("/partner/v1/clients/admin", headers=headers)
            return str(me.json()["role"])

    import asyncio

    assert asyncio.run(check()) == "platform_admin"


@pytest.mark.parametrize(
    ("role", "binding", "problem"),
    [
        ("platform_admin", Binding(), None),
        ("platform_admin", Binding(enterprise_id=1), "role platform_admin has no enterprise"),
        ("enterprise_admin", Binding(enterprise_id=1), None),
        ("enterprise_viewer", Binding(), "role enterprise_viewer needs its enterprise"),
        ("chain_analyst", Binding(1, park_id=2), "role chain_analyst has no park"),
        ("park_authority", Binding(park_id=2), None),
        ("park_authority", Binding(region="CN-JS"), "role park_authority needs its park"),
        ("region_authority", Binding(region="CN-JS"), None),
        ("region_authority", Binding(region=""), "role region_authority needs its region"),
    ],
)
def test_binding_of_each_role(role: str, binding: Binding, problem: str | None) -> None:
    found = binding_problem(role, binding)  # type: ignore[arg-type]
    assert (str(found) if found else None) == problem
