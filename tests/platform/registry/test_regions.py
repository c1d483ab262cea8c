"""Regions that register their enterprises with consent, through ``/api/v1`` on a real
PostgreSQL, as parks do: the region's authority asks two enterprises, one consents; the
region's roll-up counts it from its consent on (not over a window that began before), the
other, declining, never; an enterprise registered in the region from the start counts all
along; a registry file that moves an enterprise moves it from its effective time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import Enterprise, Registry
from plantwire_platform.registry.registrations import ALWAYS, REGIONS, members_during
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from tests.platform.identities import person, secured


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        root = await person(client, database_url, "root", "platform_admin")
        ids: dict[str, Any] = {"root": root}
        for n, (code, region) in enumerate((("OLD", "CN-JS"), ("NEW", ""), ("SHY", ""))):
            made = await client.post(
                "/api/v1/enterprises",
                json={"code": code, "uscc": f"9132000000000{n:04d}X", "name": f"{code} Co.",
                      "region": region},
                headers=root,
            )  # fmt: skip
            assert made.status_code == 201, made.text
            ids[code] = made.json()["enterprise_id"]
            ids[f"{code}-admin"] = await person(
                client, database_url, f"{code.lower()}-admin", "enterprise_admin", ids[code]
            )
        for region in ("CN-JS", "CN-ZJ"):
            ids[region] = await person(
                client, database_url, f"{region.lower()}-office", "region_authority",
                region=region,
            )  # fmt: skip
        ids["new-viewer"] = await person(
            client, database_url, "new-viewer", "enterprise_viewer", ids["NEW"]
        )
        yield client, ids


async def members(
    client: httpx.AsyncClient, headers: dict[str, str], start: datetime, end: datetime
) -> list[int]:
    got = await client.get(
        "/api/v1/regions/CN-JS/indicators",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=headers,
    )
    assert got.status_code == 200, got.text
    return [m["id"] for m in got.json()["members"]]


async def test_the_region_counts_the_enterprise_that_consented_from_its_consent(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, ids = world
    office = ids["CN-JS"]
    asked = {}
    for code in ("NEW", "SHY"):
        sent = await client.post(
            "/api/v1/regions/CN-JS/registrations", json={"enterprise_id": ids[code]},
            headers=office,
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        asked[code] = sent.json()["id"]
    other = await client.post(
        "/api/v1/regions/CN-JS/registrations", json={"enterprise_id": ids["NEW"]},
        headers=ids["CN-ZJ"],
    )  # fmt: skip
    assert (other.status_code, other.json()["error"]) == (403, "not_bound")
    again = await client.post(
        "/api/v1/regions/CN-JS/registrations", json={"enterprise_id": ids["OLD"]},
        headers=office,
    )  # fmt: skip
    assert (again.status_code, again.json()["error"]) == (409, "conflict")  # in it already
    by_admin = await client.post(
        "/api/v1/regions/CN-JS/registrations", json={"enterprise_id": ids["NEW"]},
        headers=ids["NEW-admin"],
    )  # fmt: skip
    assert (by_admin.status_code, by_admin.json()["error"]) == (403, "role_forbidden")
    viewer = await client.post(
        f"/api/v1/region-registrations/{asked['NEW']}/accept", headers=ids["new-viewer"]
    )
    assert (viewer.status_code, viewer.json()["error"]) == (403, "role_forbidden")
    by_office = await client.post(
        f"/api/v1/region-registrations/{asked['NEW']}/accept", headers=office
    )
    assert (by_office.status_code, by_office.json()["error"]) == (403, "role_forbidden")
    outside = await members(client, office, datetime.now().astimezone() - timedelta(hours=1),
                            datetime.now().astimezone() - timedelta(minutes=1))  # fmt: skip
    assert outside == [ids["OLD"]]  # asked is not in

    consent = await client.post(
        f"/api/v1/region-registrations/{asked['NEW']}/accept", headers=ids["NEW-admin"]
    )
    assert consent.status_code == 200, consent.text
    at = datetime.fromisoformat(consent.json()["decided_at"])
    twice = await client.post(
        f"/api/v1/region-registrations/{asked['NEW']}/accept", headers=ids["NEW-admin"]
    )
    assert (twice.status_code, twice.json()["error"]) == (409, "conflict")
    declined = await client.post(
        f"/api/v1/region-registrations/{asked['SHY']}/decline", headers=ids["SHY-admin"]
    )
    assert declined.json()["status"] == "declined"
    listed = await client.get("/api/v1/region-registrations", headers=office)
    assert [(r["enterprise_id"], r["status"]) for r in listed.json()] == [
        (ids["NEW"], "accepted"),
        (ids["SHY"], "declined"),
    ]
    own = await client.get("/api/v1/region-registrations", headers=ids["SHY-admin"])
    assert [r["enterprise_id"] for r in own.json()] == [ids["SHY"]]
    await asyncio.sleep(2.5)
    after = await members(client, office, at, at + timedelta(seconds=2))
    assert after == [ids["OLD"], ids["NEW"]]
    before = await members(client, office, at - timedelta(hours=1), at - timedelta(seconds=1))
    assert before == [ids["OLD"]]
    across = await members(client, office, at - timedelta(hours=1), at + timedelta(seconds=2))
    assert across == [ids["OLD"]]
    visible = await client.get("/api/v1/enterprises", headers=office)
    assert sorted(e["id"] for e in visible.json()) == sorted([ids["OLD"], ids["NEW"]])
    zj = await client.get("/api/v1/enterprises", headers=ids["CN-ZJ"])
    assert zj.json() == []


async def test_a_registry_file_keeps_the_region_history_in_step(database_url: str) -> None:
    moved = datetime(2026, 6, 1, tzinfo=UTC)

    def registry(region: str) -> Registry:
        ent = Enterprise(code="HXP", uscc="91320500000000001X", name="H", region=region)
        return Registry(enterprises=(ent,))

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await import_registry(conn, registry("CN-JS"))
        await import_registry(conn, registry("CN-JS"), moved - timedelta(days=1))  # no change
        await import_registry(conn, registry("CN-ZJ"), moved)
        cur = await conn.execute(
            "SELECT region, valid_from, valid_to FROM region_member_history ORDER BY valid_from"
        )
        history = await cur.fetchall()
        [ent] = [
            row[0] for row in await (await conn.execute("SELECT id FROM enterprise")).fetchall()
        ]
        assert await members_during(conn, REGIONS, "CN-JS", moved - timedelta(days=2), moved) == [
            ent
        ]
        assert await members_during(conn, REGIONS, "CN-ZJ", moved, moved + timedelta(days=1)) == [
            ent
        ]
        assert (
            await members_during(
                conn, REGIONS, "CN-ZJ", moved - timedelta(days=1), moved + timedelta(days=1)
            )
            == []
        )
    assert history == [("CN-JS", ALWAYS, moved), ("CN-ZJ", moved, None)]


async def test_a_region_is_readable_before_its_first_member_and_after_its_last(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, ids = world
    root = ids["root"]
    hour = {
        "from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "to": datetime.now(UTC).isoformat(),
    }
    # CN-ZJ has its authority and no enterprise yet: an empty roll-up, not "not found"
    for headers in (ids["CN-ZJ"], root):
        got = await client.get("/api/v1/regions/CN-ZJ/indicators", params=hour, headers=headers)
        assert got.status_code == 200, got.text
        body = got.json()  # no member, no figure (as for an empty park or chain)
        assert (body["subject"]["id"], body["indicators"], body.get("members")) == (
            "CN-ZJ",
            [],
            None,
        )
    listed = await client.get("/api/v1/regions", headers=ids["CN-ZJ"])
    assert listed.json() == [{"id": "CN-ZJ", "enterprises": 0}]
    others = await client.get("/api/v1/regions/CN-ZJ/indicators", params=hour, headers=ids["CN-JS"])
    assert (others.status_code, others.json()["error"]) == (403, "not_bound")
    nowhere = await client.get("/api/v1/regions/XX-NONE/indicators", params=hour, headers=root)
    assert (nowhere.status_code, nowhere.json()["error"]) == (404, "not_found")
    # OLD, CN-JS's only member, moves to CN-ZJ: the hour before stays CN-JS's
    asked = await client.post(
        "/api/v1/regions/CN-ZJ/registrations", json={"enterprise_id": ids["OLD"]},
        headers=ids["CN-ZJ"],
    )  # fmt: skip
    assert asked.status_code == 201, asked.text
    moved = await client.post(
        f"/api/v1/region-registrations/{asked.json()['id']}/accept", headers=ids["OLD-admin"]
    )
    assert moved.status_code == 200, moved.text
    at = datetime.fromisoformat(moved.json()["decided_at"])
    for headers in (ids["CN-JS"], root):
        assert await members(client, headers, at - timedelta(hours=1), at) == [ids["OLD"]]
    assert [r["id"] for r in (await client.get("/api/v1/regions", headers=root)).json()] == [
        "CN-JS", "CN-ZJ"]  # fmt: skip
