"""Parks that register their enterprises with consent, through ``/api/v1`` on a real
PostgreSQL: the park's authority asks two enterprises, one consents; the park's roll-up counts
it from its consent on (not over a window that began before), the other, declining, never; an
enterprise that was in the park by the registry file counts all along."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import Park, Registry
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from tests.platform.identities import person, secured, sign_in


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(
            conn, Registry(parks=(Park(code="NORTH", name="North"), Park(code="SOUTH", name="S")))
        )
        cur = await conn.execute("SELECT code, id FROM park")
        parks: dict[str, int] = dict(await cur.fetchall())
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        root = await person(client, database_url, "root", "platform_admin")
        ids: dict[str, Any] = {"parks": parks, "root": root}
        for n, code in enumerate(("OLD", "NEW", "SHY")):
            made = await client.post(
                "/api/v1/enterprises",
                json={"code": code, "uscc": f"9144000000000{n:04d}X", "name": f"{code} Co."},
                headers=root,
            )
            assert made.status_code == 201, made.text
            ids[code] = made.json()["enterprise_id"]
            ids[f"{code}-admin"] = await person(
                client, database_url, f"{code.lower()}-admin", "enterprise_admin", ids[code]
            )
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await import_registry(  # OLD was in the park before: by the registry file
                conn,
                Registry.model_validate(
                    {
                        "parks": [{"code": "NORTH", "name": "North"}],
                        "enterprises": [
                            {"code": "OLD", "uscc": "91440000000000000X", "name": "OLD Co.",
                             "park": "NORTH"}
                        ],
                    }
                ),
            )  # fmt: skip
        for code in ("NORTH", "SOUTH"):
            ids[code] = await person(
                client, database_url, f"{code.lower()}-office", "park_authority",
                park_id=parks[code],
            )  # fmt: skip
        ids["new-viewer"] = await person(
            client, database_url, "new-viewer", "enterprise_viewer", ids["NEW"]
        )
        yield client, ids


async def members(
    client: httpx.AsyncClient, headers: dict[str, str], park: int, start: datetime, end: datetime
) -> list[int]:
    got = await client.get(
        f"/api/v1/parks/{park}/indicators",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=headers,
    )
    assert got.status_code == 200, got.text
    return [m["id"] for m in got.json()["members"]]


async def test_the_park_counts_the_enterprise_that_consented_from_its_consent(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, ids = world
    north, office = ids["parks"]["NORTH"], ids["NORTH"]
    asked = {}
    for code in ("NEW", "SHY"):
        sent = await client.post(
            f"/api/v1/parks/{north}/registrations", json={"enterprise_id": ids[code]},
            headers=office,
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        asked[code] = sent.json()["id"]
    other = await client.post(
        f"/api/v1/parks/{north}/registrations", json={"enterprise_id": ids["NEW"]},
        headers=ids["SOUTH"],
    )  # fmt: skip
    assert (other.status_code, other.json()["error"]) == (403, "not_bound")
    again = await client.post(
        f"/api/v1/parks/{north}/registrations", json={"enterprise_id": ids["OLD"]},
        headers=office,
    )  # fmt: skip
    assert (again.status_code, again.json()["error"]) == (409, "conflict")  # in it already
    viewer = await client.post(
        f"/api/v1/registrations/{asked['NEW']}/accept", headers=ids["new-viewer"]
    )
    assert (viewer.status_code, viewer.json()["error"]) == (403, "role_forbidden")
    by_office = await client.post(f"/api/v1/registrations/{asked['NEW']}/accept", headers=office)
    assert (by_office.status_code, by_office.json()["error"]) == (403, "role_forbidden")

    consent = await client.post(
        f"/api/v1/registrations/{asked['NEW']}/accept", headers=ids["NEW-admin"]
    )
    assert consent.status_code == 200, consent.text
    at = datetime.fromisoformat(consent.json()["decided_at"])
    declined = await client.post(
        f"/api/v1/registrations/{asked['SHY']}/decline", headers=ids["SHY-admin"]
    )
    assert declined.json()["status"] == "declined"
    listed = await client.get("/api/v1/registrations", headers=office)
    assert [(r["enterprise_id"], r["status"]) for r in listed.json()] == [
        (ids["NEW"], "accepted"),
        (ids["SHY"], "declined"),
    ]
    await asyncio.sleep(2.5)
    after = await members(client, office, north, at, at + timedelta(seconds=2))
    assert after == [ids["OLD"], ids["NEW"]]
    before = await members(
        client, office, north, at - timedelta(hours=1), at - timedelta(seconds=1)
    )
    assert before == [ids["OLD"]]
    across = await members(
        client, office, north, at - timedelta(hours=1), at + timedelta(seconds=2)
    )
    assert across == [ids["OLD"]]
    listed_parks = await client.get("/api/v1/enterprises", headers=office)
    assert sorted(e["id"] for e in listed_parks.json()) == sorted([ids["OLD"], ids["NEW"]])


async def test_a_platform_admin_registers_a_park_its_authority_then_fills(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, ids = world
    park = {"code": "EAST", "name": "East Park", "region": "CN-SH"}
    made = await client.post("/api/v1/parks", json=park, headers=ids["root"])
    assert made.status_code == 201, made.text
    assert made.json() == {"id": made.json()["id"], **park}
    again = await client.post("/api/v1/parks", json=park, headers=ids["root"])
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    for caller in ("OLD-admin", "NORTH"):
        refused = await client.post("/api/v1/parks", json=park, headers=ids[caller])
        assert (refused.status_code, refused.json()["error"]) == (403, "role_forbidden")
    office = await client.post(
        "/api/v1/people", json={"username": "east-office", "role": "park_authority",
                                "park_id": made.json()["id"]}, headers=ids["root"],
    )  # fmt: skip
    assert office.status_code == 201, office.text
    east = await sign_in(client, "east-office", office.json()["password"])
    asked = await client.post(
        f"/api/v1/parks/{made.json()['id']}/registrations", json={"enterprise_id": ids["SHY"]},
        headers=east,
    )  # fmt: skip
    assert asked.status_code == 201, asked.text
    listed = await client.get("/api/v1/parks", headers=east)
    assert [(p["code"], p["enterprises"]) for p in listed.json()] == [("EAST", 0)]
