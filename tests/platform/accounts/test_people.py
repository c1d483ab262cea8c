"""People through ``/api/v1``: an enterprise admin lists its enterprise's people (platform
admins everyone; nobody sees a password), and every person changes their own password, giving
the current one; the tokens they held stop working and only the new password signs in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from tests.platform.identities import register, secured, sign_in

REGISTRY = """
[[enterprises]]
code = "A"
uscc = "91110000MA0000000X"
name = "A Works"

[[enterprises]]
code = "B"
uscc = "91110000MA0000001X"
name = "B Works"
"""


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        ids = await import_registry(conn, parse_registry(REGISTRY))
    people = {
        "root": ("platform_admin", None),
        "a-admin": ("enterprise_admin", ids["A"]),
        "a-viewer": ("enterprise_viewer", ids["A"]),
        "b-admin": ("enterprise_admin", ids["B"]),
    }
    passwords = {
        name: await register(database_url, name, role, ent)  # type: ignore[arg-type]
        for name, (role, ent) in people.items()
    }
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client, {"passwords": passwords, "ids": ids}


async def test_admins_list_their_enterprises_people(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, w = world
    seen = {}
    for name in ("root", "a-admin", "b-admin", "a-viewer"):
        got = await client.get(
            "/api/v1/people", headers=await sign_in(client, name, w["passwords"][name])
        )
        seen[name] = (got.status_code, got.json())
    assert seen["a-viewer"][0] == 403 and seen["a-viewer"][1]["error"] == "role_forbidden"
    names = {k: [p["username"] for p in v[1]] for k, v in seen.items() if v[0] == 200}
    assert names == {
        "root": ["a-admin", "a-viewer", "b-admin", "root"],
        "a-admin": ["a-admin", "a-viewer"],
        "b-admin": ["b-admin"],
    }
    a_viewer = next(p for p in seen["a-admin"][1] if p["username"] == "a-viewer")
    assert a_viewer == {
        "username": "a-viewer", "role": "enterprise_viewer", "enterprise_id": w["ids"]["A"],
        "park_id": None, "region": None, "name": "A-Viewer", "disabled": False,
    }  # fmt: skip


async def test_a_person_changes_their_password(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, w = world
    old = w["passwords"]["a-viewer"]
    token = await sign_in(client, "a-viewer", old)
    path = "/api/v1/people/me/password"
    wrong = await client.post(
        path, json={"current_password": "not-it-at-all", "new_password": "x" * 20}, headers=token
    )
    assert (wrong.status_code, wrong.json()["error"]) == (403, "wrong_password")
    short = await client.post(
        path, json={"current_password": old, "new_password": "short"}, headers=token
    )
    assert (short.status_code, short.json()["error"]) == (422, "invalid_request")
    assert "at least 12 characters" in short.json()["detail"]
    new = "a much longer passphrase"
    done = await client.post(
        path, json={"current_password": old, "new_password": new}, headers=token
    )
    assert done.status_code == 204, done.text
    stale = await client.get("/api/v1/enterprises", headers=token)
    assert (stale.status_code, stale.json()["error"]) == (401, "invalid_token")
    refused = await client.post(
        "/auth/token", data={"grant_type": "password", "username": "a-viewer", "password": old}
    )
    assert refused.status_code in (400, 401), refused.text
    fresh = await sign_in(client, "a-viewer", new)
    assert (await client.get("/api/v1/enterprises", headers=fresh)).status_code == 200
