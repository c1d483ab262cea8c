"""People for the tests of the HTTP API: settings with the token and audit keys, a person
registered in the database, and the headers of their signed-in token (obtained through
``POST /auth/token``, as a user would)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from plantwire_platform.accounts.people import create_person
from plantwire_platform.accounts.roles import Binding, PersonRole
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
