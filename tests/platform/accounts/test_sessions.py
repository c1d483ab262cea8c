"""The console's session over HTTP on a real PostgreSQL: a sign-in with ``session=cookie`` sets
an httpOnly refresh cookie; ``POST /auth/refresh`` trades it for a new access token and a new
cookie (each good once); the session ends with sign-out, a password change, a disabled account
or revoked tokens, and a refresh token used twice ends it for its copier and its owner alike.
Every refresh is an entry of the audit chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from plantwire_platform.accounts.sessions import COOKIE, REUSE_GRACE_S
from tests.platform.identities import audited, enterprise, person, register, served

ZH = {"Accept-Language": "zh-CN"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """The API in-process, with one enterprise (its id beside the client)."""
    acme = enterprise(database_url, "ACME", "91110000000000001X")
    async with served(database_url, token_ttl_s=10) as client:
        yield client, acme


async def open_session(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Sign in as the console does; the access token (the cookie stays in the client's jar)."""
    got = await client.post(
        "/auth/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "session": "cookie",
        },
    )
    assert got.status_code == 200, got.text
    cookie = got.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/auth" in cookie
    assert got.json()["expires_in"] == 10  # the access token stays short
    return str(got.json()["access_token"])


async def refreshed(client: httpx.AsyncClient, cookie: str | None = None) -> httpx.Response:
    """POST /auth/refresh with the jar's cookie, or with ``cookie`` instead."""
    if cookie is None:
        return await client.post("/auth/refresh", headers=ZH)
    jar = client.cookies
    client.cookies = httpx.Cookies()
    client.cookies.set(COOKIE, cookie)
    try:
        return await client.post("/auth/refresh", headers=ZH)
    finally:
        client.cookies = jar


def cookie_of(client: httpx.AsyncClient) -> str:
    value = client.cookies.get(COOKIE, path="/auth")
    assert value
    return value


async def reads(client: httpx.AsyncClient, token: str, enterprise: int) -> int:
    got = await client.get(
        f"/api/v1/enterprises/{enterprise}", headers={"Authorization": f"Bearer {token}"}
    )
    return got.status_code


async def test_a_session_refreshes_and_rotates_its_token(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, acme = api
    password = await register(database_url, "ana", "enterprise_viewer", acme)
    first = await open_session(client, "ana", password)
    assert await reads(client, first, acme) == 200
    used = cookie_of(client)

    again = await refreshed(client)
    assert again.status_code == 200, again.text
    token = again.json()["access_token"]
    assert token != first and await reads(client, token, acme) == 200
    assert cookie_of(client) != used  # rotated
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT token_hash FROM account_session").fetchall()
    assert len(stored) == 2 and all(used.encode() not in bytes(r[0]) for r in stored)

    # the replaced token, just used: refused alone (another tab), the session lives on
    late = await refreshed(client, used)
    assert (late.status_code, late.json()["error"]) == (409, "conflict")
    assert (await refreshed(client)).status_code == 200

    assert audited(database_url, "person.refresh") == [
        ("ana", "allowed", "", 200),
        ("ana", "denied", "conflict", 409),
        ("ana", "allowed", "", 200),
    ]


async def test_a_refresh_token_used_again_ends_the_session(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, acme = api
    password = await register(database_url, "ana", "enterprise_viewer", acme)
    await open_session(client, "ana", password)
    copied = cookie_of(client)
    assert (await refreshed(client)).status_code == 200
    with psycopg.connect(database_url) as conn:  # the copy comes back after the grace time
        conn.execute(
            "UPDATE account_session SET used_at = used_at - make_interval(secs => %s)"
            " WHERE used_at IS NOT NULL",
            (REUSE_GRACE_S + 1,),
        )
    stolen = await refreshed(client, copied)
    assert stolen.status_code == 401
    assert stolen.json() == {
        "error": "invalid_grant",
        "detail": "这个刷新令牌此前已被使用：其会话已结束",
    }
    owner = await refreshed(client)  # the owner's current token ended with it
    assert (owner.status_code, owner.json()["error"]) == (401, "invalid_grant")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM account_session").fetchone() == (0,)


async def test_a_refresh_after_revocation_is_refused(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, acme = api
    password = await register(database_url, "ana", "enterprise_admin", acme)
    admin = await person(client, database_url, "root", "platform_admin")

    # a password change ends the session
    token = await open_session(client, "ana", password)
    new_password = "another password 123"
    changed = await client.post(
        "/api/v1/people/me/password",
        headers={"Authorization": f"Bearer {token}"},
        json={"current_password": password, "new_password": new_password},
    )
    assert changed.status_code == 204, changed.text
    after = await refreshed(client)
    assert after.status_code == 401
    assert after.json() == {
        "error": "invalid_grant",
        "detail": "会话已结束（密码已更改、账号已停用或令牌已吊销）：请登录",
    }
    assert COOKIE not in client.cookies  # the answer removed it

    # revoked tokens end it
    await open_session(client, "ana", new_password)
    revoked = await client.post("/partner/v1/clients/ana/revoke-tokens", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert (await refreshed(client)).status_code == 401

    # so does disabling the person (and enabling them again does not bring it back)
    await open_session(client, "ana", new_password)
    assert (await client.post("/partner/v1/clients/ana/disable", headers=admin)).is_success
    assert (await client.post("/partner/v1/clients/ana/enable", headers=admin)).is_success
    assert (await refreshed(client)).status_code == 401

    # and signing out
    await open_session(client, "ana", new_password)
    kept = cookie_of(client)
    out = await client.post("/auth/signout")
    assert out.status_code == 204 and COOKIE not in client.cookies
    gone = await refreshed(client, kept)
    assert (gone.status_code, gone.json()["error"]) == (401, "invalid_grant")
    assert gone.json()["detail"] == "会话不存在或已结束：请登录"

    # no cookie at all, and a sign-in without session=cookie opens none
    assert (await refreshed(client)).json()["detail"] == "没有会话：请登录"
    plain = await client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "ana", "password": new_password},
    )
    assert plain.status_code == 200 and "set-cookie" not in plain.headers


async def test_an_expired_session_is_refused(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, acme = api
    password = await register(database_url, "ana", "enterprise_viewer", acme)
    await open_session(client, "ana", password)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE account_session SET expires_at = now() - interval '1 second'")
    gone = await client.post("/auth/refresh")  # English unless asked otherwise
    assert gone.json() == {"error": "invalid_grant", "detail": "the session expired: sign in"}
