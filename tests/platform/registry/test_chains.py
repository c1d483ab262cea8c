"""Chains their leaders build, through ``/api/v1`` on a real PostgreSQL: the leader invites two
suppliers, one accepts; the chain's roll-up counts exactly that one, from its acceptance on
(over a window that begins before, the supplier was not a member throughout it, so it does
not count), and no longer after it leaves; the other, still invited and then declining, never.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from plantwire_platform.server import create_app
from tests.platform.identities import person, secured

PLANT = """
code = "{code}"
uscc = "{uscc}"
name = "{code} Co."
[[sites]]
code = "S"
name = "Site"
timezone = "UTC"
edge_node = "{code}-GW"
[[sites.lines]]
code = "L"
name = "Line"
[[sites.lines.processes]]
code = "OP10"
name = "Turning"
is_key = true
key_reason = "tolerance"
equipment = ["M1"]
[[sites.equipment]]
code = "M1"
name = "Lathe"
line = "L"
control_type = "{control}"
declared_nc = {nc}
"""


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
        for n, (code, control, nc) in enumerate(
            (("LEAD", "CNC", "true"), ("SUPA", "CNC", "true"), ("SUPB", "MANUAL", "false"))
        ):
            uscc = f"9132000000000{n:04d}X"
            made = await client.post(
                "/api/v1/enterprises",
                json={"code": code, "uscc": uscc, "name": f"{code} Co."},
                headers=root,
            )
            assert made.status_code == 201, made.text
            ent = made.json()["enterprise_id"]
            put = await client.put(
                f"/api/v1/enterprises/{ent}/registry",
                content=PLANT.format(code=code, uscc=uscc, control=control, nc=nc),
                headers={**root, "content-type": "application/toml"},
            )
            assert put.status_code == 200, put.text
            ids[code] = ent
            ids[f"{code}-admin"] = await person(
                client, database_url, f"{code.lower()}-admin", "enterprise_admin", ent
            )
        ids["analyst"] = await person(client, database_url, "analyst", "chain_analyst", ids["LEAD"])
        yield client, ids


async def rollup(
    client: httpx.AsyncClient, headers: dict[str, str], chain: int, start: datetime, end: datetime
) -> tuple[list[int], dict[str, Any]]:
    got = await client.get(
        f"/api/v1/chains/{chain}/indicators",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=headers,
    )
    assert got.status_code == 200, got.text
    body = got.json()
    rates = {i["name"]: i for i in body["indicators"]}
    return [m["id"] for m in body["members"]], rates["nc_rate_declared"]


async def test_the_rollup_counts_the_supplier_that_accepted_from_its_acceptance(
    world: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, ids = world
    lead = ids["LEAD-admin"]
    made = await client.post("/api/v1/chains", json={"code": "GEAR", "name": "Gears"}, headers=lead)
    assert made.status_code == 201, made.text
    chain = made.json()["id"]
    assert made.json()["leader_id"] == ids["LEAD"]
    invitations = {}
    for code in ("SUPA", "SUPB"):
        sent = await client.post(
            f"/api/v1/chains/{chain}/invitations", json={"enterprise_id": ids[code]}, headers=lead
        )
        assert sent.status_code == 201, sent.text
        invitations[code] = sent.json()["id"]
    again = await client.post(
        f"/api/v1/chains/{chain}/invitations", json={"enterprise_id": ids["SUPA"]}, headers=lead
    )
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    # only the invited enterprise's admins answer
    foreign = await client.post(
        f"/api/v1/invitations/{invitations['SUPA']}/accept", headers=ids["SUPB-admin"]
    )
    assert (foreign.status_code, foreign.json()["error"]) == (403, "not_bound"), foreign.text
    by_leader = await client.post(f"/api/v1/invitations/{invitations['SUPA']}/accept", headers=lead)
    assert (by_leader.status_code, by_leader.json()["error"]) == (403, "not_bound")

    accepted = await client.post(
        f"/api/v1/invitations/{invitations['SUPA']}/accept", headers=ids["SUPA-admin"]
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    at = datetime.fromisoformat(accepted.json()["decided_at"])
    listed = await client.get("/api/v1/invitations", headers=ids["SUPB-admin"])
    assert [(i["chain"], i["status"]) for i in listed.json()] == [("GEAR", "invited")]
    await asyncio.sleep(2.5)  # a window after the acceptance, ended

    analyst = ids["analyst"]
    after, declared = await rollup(client, analyst, chain, at, at + timedelta(seconds=2))
    assert after == [ids["LEAD"], ids["SUPA"]]  # exactly the one that accepted
    assert (declared["value"], declared["enterprises"]) == (1.0, 2)
    earlier, declared = await rollup(
        client, analyst, chain, at - timedelta(hours=1), at - timedelta(seconds=1)
    )
    assert earlier == [ids["LEAD"]] and declared["enterprises"] == 1
    across, _ = await rollup(
        client, analyst, chain, at - timedelta(hours=1), at + timedelta(seconds=2)
    )
    assert across == [ids["LEAD"]]  # not a member throughout

    declined = await client.post(
        f"/api/v1/invitations/{invitations['SUPB']}/decline", headers=ids["SUPB-admin"]
    )
    assert declined.json()["status"] == "declined"
    left = await client.post(f"/api/v1/chains/{chain}/leave", headers=ids["SUPA-admin"])
    assert left.status_code == 204, left.text
    gone = datetime.now(tz=at.tzinfo)
    await asyncio.sleep(1.5)
    during, _ = await rollup(client, analyst, chain, at, at + timedelta(seconds=2))
    assert during == [ids["LEAD"], ids["SUPA"]]  # the past keeps its members
    later, _ = await rollup(client, analyst, chain, gone, gone + timedelta(seconds=1))
    assert later == [ids["LEAD"]]
    twice = await client.post(f"/api/v1/chains/{chain}/leave", headers=ids["SUPA-admin"])
    assert (twice.status_code, twice.json()["error"]) == (409, "conflict")
