"""Client credentials, secret rotation, revocation on the very next call, grant lifecycle, and
the protections: rate limits, body size, uniform errors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg

from plantwire_platform.partner.tokens import AUDIENCE, Caller, issue_token
from plantwire_platform.server import create_app
from tests.platform.partner.conftest import KEY, T0, World, grant, settings


async def token(w: World, client_id: str, secret: str) -> httpx.Response:
    return await w.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


async def register(w: World, client_id: str, role: str, ent: str | None) -> str:
    r = await w.client.post(
        "/partner/v1/clients",
        json={"client_id": client_id, "role": role, "enterprise_id": w.ent[ent] if ent else None},
        headers=w.auth("admin"),
    )
    assert r.status_code == 201, r.text
    secret: str = r.json()["client_secret"]
    return secret


async def test_revocation_fails_the_next_call_with_an_unexpired_token(world: World) -> None:
    w = world
    secret = await register(w, "lead-erp", "partner", "LEAD")
    r = await token(w, "lead-erp", secret)
    assert r.status_code == 200, r.text
    issued = r.json()
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 300
    auth = {"Authorization": f"Bearer {issued['access_token']}"}
    g = await grant(w, "counts", purpose="planning")
    url = f"/partner/v1/datasets/{w.dataset['counts']}/counts"
    params = {"purpose": "planning", "from": T0.isoformat()}
    assert (await w.client.get(url, params=params, headers=auth)).status_code == 200

    r = await w.client.post(f"/partner/v1/grants/{g['id']}/revoke", headers=w.auth("sup-admin"))
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = await w.client.get(url, params=params, headers=auth)
    assert (r.status_code, r.json()["error"]) == (403, "revoked")
    claims = jwt.decode(issued["access_token"], KEY, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["exp"] > datetime.now(UTC).timestamp()  # the token itself is still valid
    again = await w.client.post(f"/partner/v1/grants/{g['id']}/activate", headers=auth)
    assert (again.status_code, again.json()["error"]) == (409, "conflict")


async def test_client_credentials_and_rotation(world: World) -> None:
    w = world
    first = await register(w, "sup-mes", "partner", "SUP")
    basic = base64.b64encode(f"sup-mes:{first}".encode()).decode()
    r = await w.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    bad = await token(w, "sup-mes", first + "x")
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
    wrong = await w.client.post("/oauth/token", data={"grant_type": "password"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "unsupported_grant_type")
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        cur = await conn.execute("SELECT hash FROM partner_secret WHERE client_id = 'sup-mes'")
        (stored,) = await cur.fetchone() or ("",)
    assert stored.startswith("scrypt$") and first not in stored

    # rotation: the new secret works at once and the old one during the grace period
    sup_mes = {"Authorization": f"Bearer {r.json()['access_token']}"}
    rotated = await w.client.post("/partner/v1/clients/sup-mes/secrets", headers=sup_mes)
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()["client_secret"]
    assert (await token(w, "sup-mes", second)).status_code == 200
    assert (await token(w, "sup-mes", first)).status_code == 200
    third = (
        await w.client.post(
            "/partner/v1/clients/sup-mes/secrets",
            params={"grace_s": 0},
            headers=w.auth("sup-admin"),
        )
    ).json()["client_secret"]
    assert (await token(w, "sup-mes", third)).status_code == 200
    for old in (first, second):
        assert (await token(w, "sup-mes", old)).status_code == 401
    other = await w.client.post("/partner/v1/clients/sup-mes/secrets", headers=w.auth("out-admin"))
    assert (other.status_code, other.json()["error"]) == (404, "not_found")

    # who may register whom
    for who, body, status in [
        ("lead-app", {"client_id": "x-1", "role": "partner", "enterprise_id": w.ent["LEAD"]}, 403),
        ("lead-admin", {"client_id": "x-2", "role": "partner", "enterprise_id": w.ent["SUP"]}, 403),
        ("lead-admin", {"client_id": "x-3", "role": "platform_admin"}, 403),
        (
            "lead-admin",
            {"client_id": "x-4", "role": "partner", "enterprise_id": w.ent["LEAD"]},
            201,
        ),
        ("admin", {"client_id": "x-4", "role": "partner", "enterprise_id": w.ent["LEAD"]}, 409),
    ]:
        r = await w.client.post("/partner/v1/clients", json=body, headers=w.auth(who))
        assert r.status_code == status, (who, body, r.text)

    expired = issue_token(
        Caller("lead-app", w.ent["LEAD"], "partner"),
        KEY,
        60,
        now=datetime.now(UTC) - timedelta(minutes=2),
    )
    forged = issue_token(Caller("lead-app", w.ent["LEAD"], "partner"), "another-key" * 4, 60)
    for bearer, detail in ((expired, "token expired"), (forged, "invalid token"), ("x", "invalid")):
        r = await w.client.get("/partner/v1/catalog", headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text
        assert detail in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"


async def test_grant_lifecycle_and_rules(world: World) -> None:
    w = world
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()

    async def ask(dataset: str, **kw: Any) -> httpx.Response:
        body = {"dataset_id": w.dataset[dataset], "purpose": "planning", "expires_at": expires}
        return await w.client.post(
            "/partner/v1/grants", json={**body, **kw}, headers=w.auth("lead-app")
        )

    refusals: list[tuple[str, dict[str, Any], str]] = [
        ("core", {}, "grade_forbidden"),
        ("ind", {"granularity": "raw", "purpose": "quality"}, "grade_forbidden"),
        ("counts", {"granularity": "raw"}, "out_of_scope"),
        ("counts", {"purpose": "resale"}, "wrong_purpose"),
        ("ind", {"purpose": "quality", "site_ids": [w.site["S1"]]}, "out_of_scope"),
        ("states", {"site_ids": [w.site["LS"]]}, "out_of_scope"),
    ]
    for dataset, kw, reason in refusals:
        r = await ask(dataset, **kw)
        assert (r.status_code, r.json()["error"]) == (403, reason), (dataset, kw, r.text)
    assert (await ask("private")).status_code == 404

    important = (await ask("ind", purpose="quality")).json()
    assert important["status"] == "requested"  # important data waits for the supplier
    gid = important["id"]
    for who, action, status in [
        ("lead-app", "activate", 409),  # not approved yet
        ("lead-app", "approve", 403),  # the partner cannot approve its own request
        ("sup-app", "approve", 403),  # only the supplier's enterprise admin decides
        ("out-admin", "approve", 404),  # a stranger does not see the grant
        ("sup-admin", "approve", 200),
        ("sup-admin", "approve", 409),
        ("lead-app", "activate", 200),
        ("sup-admin", "terminate", 403),  # terminating is the partner's move
        ("lead-admin", "terminate", 200),
        ("sup-admin", "revoke", 409),  # already ended
    ]:
        r = await w.client.post(f"/partner/v1/grants/{gid}/{action}", headers=w.auth(who))
        assert r.status_code == status, (who, action, r.text)
    assert (await w.client.get(f"/partner/v1/grants/{gid}", headers=w.auth("sup-app"))).json()[
        "status"
    ] == "terminated"
    general = (await ask("counts")).json()
    assert general["status"] == "approved"  # general data: approved on request
    rejected = (await ask("ind", purpose="planning")).json()
    r = await w.client.post(
        f"/partner/v1/grants/{rejected['id']}/reject", headers=w.auth("sup-admin")
    )
    assert r.json()["status"] == "rejected"
    listed = await w.client.get("/partner/v1/grants", headers=w.auth("out-app"))
    assert listed.json()["items"] == []
    mine = await w.client.get("/partner/v1/grants", headers=w.auth("sup-app"))
    assert [g["id"] for g in mine.json()["items"]] == [gid, general["id"], rejected["id"]]


async def test_catalog_visibility_and_paging(world: World) -> None:
    w = world
    seen = {}
    for who in ("sup-app", "lead-app", "out-app", "admin"):
        r = await w.client.get("/partner/v1/catalog", headers=w.auth(who))
        assert r.status_code == 200, r.text
        seen[who] = sorted(d["code"] for d in r.json()["items"])
    everything = sorted(w.dataset)
    assert seen["sup-app"] == seen["admin"] == everything
    assert seen["lead-app"] == sorted(set(everything) - {"private"})  # chain, not private
    assert seen["out-app"] == []
    page1 = (
        await w.client.get("/partner/v1/catalog", params={"limit": 2}, headers=w.auth("lead-app"))
    ).json()
    page2 = (
        await w.client.get(
            "/partner/v1/catalog",
            params={"limit": 2, "cursor": page1["next_cursor"]},
            headers=w.auth("lead-app"),
        )
    ).json()
    assert [d["code"] for d in page1["items"] + page2["items"]] == [
        "ind",
        "states",
        "counts",
        "telem",
    ]
    general = await w.client.get(
        "/partner/v1/catalog",
        params={"grade": "general", "purpose": "planning"},
        headers=w.auth("lead-app"),
    )
    assert [d["code"] for d in general.json()["items"]] == ["states", "counts"]
    hidden = await w.client.get(
        f"/partner/v1/catalog/{w.dataset['ind']}", headers=w.auth("out-app")
    )
    assert (hidden.status_code, hidden.json()["error"]) == (404, "not_found")
    bad = await w.client.post(
        "/partner/v1/catalog",
        headers=w.auth("sup-admin"),
        json={
            "code": "r",
            "title": "R",
            "kind": "telemetry",
            "domain": "d",
            "grade": "important",
            "granularity": "raw",
            "purposes": ["p"],
        },
    )
    assert bad.status_code == 422 and "general-grade" in bad.json()["detail"]
    lead = await w.client.post(
        "/partner/v1/catalog",
        headers=w.auth("lead-app"),
        json={
            "code": "r",
            "title": "R",
            "kind": "counts",
            "domain": "d",
            "grade": "general",
            "granularity": "raw",
            "purposes": ["p"],
        },
    )
    assert (lead.status_code, lead.json()["error"]) == (403, "role_forbidden")


async def test_rate_limit_size_limit_and_uniform_errors(database_url: str) -> None:
    app = create_app(settings(database_url, partner_rate_per_s=0.5, partner_burst=2))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for client in ("c1", "c2"):
            await conn.execute(
                "INSERT INTO partner_client (id, role) VALUES (%s, 'platform_admin')", (client,)
            )
    bearer = issue_token(Caller("c1", None, "platform_admin"), KEY, 300)
    auth = {"Authorization": f"Bearer {bearer}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        statuses = [
            (await c.get("/partner/v1/catalog", headers=auth)).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        limited = await c.get("/partner/v1/catalog", headers=auth)
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        big = await c.post(
            "/partner/v1/catalog",
            content=b"x" * 70_000,
            headers={**auth, "content-type": "application/json"},
        )
        assert (big.status_code, big.json()["error"]) == (413, "too_large")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b"y" * 10_000

        streamed = await c.post("/oauth/token", content=chunks())
        assert (streamed.status_code, streamed.json()["error"]) == (413, "too_large")
        other = issue_token(Caller("c2", None, "platform_admin"), KEY, 300)
        invalid = await c.get(
            "/partner/v1/catalog/abc", headers={"Authorization": f"Bearer {other}"}
        )
        assert (invalid.status_code, invalid.json()["error"]) == (422, "invalid_request")
        bad = await c.get(
            "/api/v1/enterprises/notanumber", headers={"Authorization": f"Bearer {other}"}
        )
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_request"
        assert isinstance(bad.json()["detail"], list)
