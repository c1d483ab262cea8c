"""People for the tests of the HTTP API: settings with the token and audit keys, the API served
in-process, an enterprise and a person registered in the database, the headers of their
signed-in token (obtained through ``POST /auth/token``, as a user would), and the audit entries
of an action."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI
from pydantic import SecretStr

from plantwire_platform.accounts.people import create_person
from plantwire_platform.accounts.roles import Binding, PersonRole
from plantwire_platform.server import create_app
from plantwire_platform.settings import PlatformSettings

TOKEN_KEY = "Hq4Lm8Xv2Rc6Tz0Nb5Wk9Pd3Fy7Gs1Ja"
AUDIT_KEY = "Zt6Kp1Vr8Qm3Xc5Nw0Hb7Ld2Fs9Gj4Ya"


def secured(database_url: str, **extra: Any) -> PlatformSettings:
    """Settings of an API that can issue and verify tokens and audit its decisions."""
    return PlatformSettings(
        database_url=database_url,
        token_secret=SecretStr(TOKEN_KEY),
        audit_key=SecretStr(AUDIT_KEY),
        **extra,
    )


async def register(
    database_url: str,
    username: str,
    role: PersonRole,
    enterprise_id: int | None = None,
    park_id: int | None = None,
    region: str | None = None,
) -> str:
    """Register a person; returns their password."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await create_person(
            conn, username, role, Binding(enterprise_id, park_id, region), username.title()
        )


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    """The Authorization header of the person's token."""
    got = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )
    assert got.status_code == 200, got.text
    return {"Authorization": f"Bearer {got.json()['access_token']}"}


async def person(
    client: httpx.AsyncClient,
    database_url: str,
    username: str,
    role: PersonRole,
    enterprise_id: int | None = None,
    park_id: int | None = None,
    region: str | None = None,
) -> dict[str, str]:
    """Register a person and sign them in: their Authorization header."""
    password = await register(database_url, username, role, enterprise_id, park_id, region)
    return await sign_in(client, username, password)


@contextlib.asynccontextmanager
async def in_process(
    settings: PlatformSettings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API with ``settings`` in-process (its lifespan started): the app and a client."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield app, client


@contextlib.asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process (lifespan started) with :func:`secured` settings, and a client."""
    async with in_process(secured(database_url, **settings)) as (_, client):
        yield client


def enterprise(database_url: str, code: str, uscc: str) -> int:
    """Register an enterprise (named after its code); its id."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "INSERT INTO enterprise (code, uscc, name) VALUES (%s, %s, %s) RETURNING id",
            (code, uscc, code.title()),
        ).fetchone()
    assert row is not None
    return int(row[0])


def audited(database_url: str, action: str) -> list[tuple[str, str, str, int]]:
    """The audit entries of ``action``, oldest first: client, outcome, reason, status."""
    with psycopg.connect(database_url) as conn:
        return [
            (str(r[0]), str(r[1]), str(r[2]), int(r[3]))
            for r in conn.execute(
                "SELECT client_id, outcome, reason, status FROM partner_audit"
                " WHERE action = %s ORDER BY id",
                (action,),
            ).fetchall()
        ]
