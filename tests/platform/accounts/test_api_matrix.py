"""The authorization matrix of ``/api/v1``: every route (enumerated from the application, so a
new route cannot escape) x every role, of this enterprise and of a foreign one, anonymous and
forged callers x own, foreign and missing resources. Each answer is compared with what a
hand-written table of the world says the caller may read, and each decision must have left
exactly one audit entry with its reason code.

The world: parks NORTH (region CN-JS) and SOUTH (CN-ZJ); LEAD and SUP in NORTH, OUT in SOUTH;
the chain GEAR led by LEAD with the supplier SUP, and the chain TOY led by OUT alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from fastapi.routing import APIRoute

from plantwire_platform.partner.tokens import Caller, create_client, issue_token
from plantwire_platform.server import create_app
from tests.platform.identities import TOKEN_KEY, person, secured, served

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW = {
    "from": (NOW - timedelta(hours=2)).isoformat(),
    "to": (NOW - timedelta(hours=1)).isoformat(),
}

ROUTES = {
    "enterprise.list": ("list", "enterprises"),
    "enterprise.read": ("enterprise", "detail"),
    "enterprise.indicators": ("enterprise", "aggregate"),
    "enterprise.explain": ("enterprise", "detail"),
    "enterprise.floor": ("enterprise", "detail"),
    "enterprise.machine": ("enterprise", "detail"),
    "chain.list": ("list", "chains"),
    "chain.indicators": ("group", "chains"),
    "park.list": ("list", "parks"),
    "park.indicators": ("group", "parks"),
    "region.list": ("list", "regions"),
    "region.indicators": ("group", "regions"),
    "enterprise.registry.read": ("enterprise", "detail"),
    "enterprise.registry.write": ("enterprise", "manage"),
    "enterprise.equipment.write": ("enterprise", "manage"),
    **{
        f"enterprise.{kind}.{verb}": ("enterprise", "manage")
        for kind in ("site", "line", "process", "equipment")
        for verb in ("create", "change")
    },
    "enterprise.gateway.list": ("enterprise", "detail"),
    "enterprise.gateway.provision": ("enterprise", "manage"),
    "enterprise.gateway.revoke": ("enterprise", "manage"),
    "enterprise.create": ("create", "enterprises"),
    "person.create": ("people", "people"),
    "person.list": ("chainop", "person.list"),
    "park.create": ("chainop", "park.create"),
    "person.password": ("chainop", "person.password"),
    "chain.create": ("chainop", "chain.create"),
    "chain.invite": ("chainop", "chain.invite"),
    "chain.leave": ("chainop", "chain.leave"),
    "invitation.list": ("chainop", "invitation.list"),
    "invitation.accept": ("chainop", "invitation.accept"),
    "invitation.decline": ("chainop", "invitation.decline"),
    "park.register": ("chainop", "park.register"),
    "registration.list": ("chainop", "registration.list"),
    "registration.accept": ("chainop", "registration.accept"),
    "registration.decline": ("chainop", "registration.decline"),
    "region.register": ("chainop", "region.register"),
    "region_registration.list": ("chainop", "region_registration.list"),
    "region_registration.accept": ("chainop", "region_registration.accept"),
    "region_registration.decline": ("chainop", "region_registration.decline"),
}
"""Every /api/v1 route by name: what it reads."""

# who each caller is, and what it may read (by hand, from the world above)
PEOPLE: dict[str, tuple[str, str | None, str | None, str | None]] = {
    # name: (role, enterprise, park, region)
    "root": ("platform_admin", None, None, None),
    "sup-admin": ("enterprise_admin", "SUP", None, None),
    "sup-viewer": ("enterprise_viewer", "SUP", None, None),
    "out-admin": ("enterprise_admin", "OUT", None, None),
    "out-viewer": ("enterprise_viewer", "OUT", None, None),
    "lead-analyst": ("chain_analyst", "LEAD", None, None),
    "sup-analyst": ("chain_analyst", "SUP", None, None),
    "out-analyst": ("chain_analyst", "OUT", None, None),
    "north-office": ("park_authority", None, "NORTH", None),
    "south-office": ("park_authority", None, "SOUTH", None),
    "js-office": ("region_authority", None, None, "CN-JS"),
    "zj-office": ("region_authority", None, None, "CN-ZJ"),
}
EVERYTHING = "*"
MAY: dict[str, dict[str, set[str] | str]] = {
    "root": {
        k: EVERYTHING
        for k in ("detail", "aggregate", "manage", "people", "chains", "parks", "regions")
    },
    "sup-admin": {"detail": {"SUP"}, "aggregate": {"SUP"}, "manage": {"SUP"}, "people": {"SUP"}},
    "sup-viewer": {"detail": {"SUP"}, "aggregate": {"SUP"}},
    "out-admin": {"detail": {"OUT"}, "aggregate": {"OUT"}, "manage": {"OUT"}, "people": {"OUT"}},
    "out-viewer": {"detail": {"OUT"}, "aggregate": {"OUT"}},
    "lead-analyst": {"aggregate": {"LEAD", "SUP"}, "chains": {"GEAR"}},
    "sup-analyst": {"aggregate": {"SUP"}},  # a supplier leads no chain
    "out-analyst": {"aggregate": {"OUT"}, "chains": {"TOY"}},
    "north-office": {"aggregate": {"LEAD", "SUP"}, "parks": {"NORTH"}},
    "south-office": {"aggregate": {"OUT"}, "parks": {"SOUTH"}},
    "js-office": {"aggregate": {"LEAD", "SUP"}, "regions": {"CN-JS"}},
    "zj-office": {"aggregate": {"OUT"}, "regions": {"CN-ZJ"}},
}
# which roles ever read what (else role_forbidden), and the reason an allowed read is given
READS = {
    "detail": {"enterprise_admin", "enterprise_viewer"},
    "aggregate": {
        "enterprise_admin",
        "enterprise_viewer",
        "chain_analyst",
        "park_authority",
        "region_authority",
    },
    "manage": {"enterprise_admin"},
    "people": {"enterprise_admin"},
    "chains": {"chain_analyst"},
    "parks": {"park_authority"},
    "regions": {"region_authority"},
}
RESOURCES = {
    "enterprises": ["SUP", "LEAD", "OUT", "MISSING"],
    "chains": ["GEAR", "TOY", "MISSING"],
    "parks": ["NORTH", "SOUTH", "MISSING"],
    "regions": ["CN-JS", "CN-ZJ", "XX-NONE"],
    "people": ["SUP", "OUT", "MISSING"],
}
"""The resources each route is tried on; a person is registered for an enterprise."""
OUTSIDERS = ("anonymous", "forged", "sup-partner")


@dataclass
class World:
    client: httpx.AsyncClient
    url: str
    ids: dict[str, str]  # resource name -> path key
    headers: dict[str, dict[str, str]]
    routes: dict[str, tuple[str, APIRoute]]  # every route of the app by name: (path, route)


def every_route(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, tuple[str, APIRoute]]]:
    """Every route of the application with its full path, through included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from every_route(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            yield route.name, (prefix + route.path, route)


async def seed(url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        ids: dict[str, str] = {}
        for code, region in (("NORTH", "CN-JS"), ("SOUTH", "CN-ZJ")):
            cur = await conn.execute(
                "INSERT INTO park (code, name, region) VALUES (%s, %s, %s) RETURNING id",
                (code, code.title(), region),
            )
            ids[code] = str((await cur.fetchone() or [0])[0])
        for n, (code, park) in enumerate((("LEAD", "NORTH"), ("SUP", "NORTH"), ("OUT", "SOUTH"))):
            cur = await conn.execute(
                "INSERT INTO enterprise (code, uscc, name, park_id) VALUES (%s, %s, %s, %s)"
                " RETURNING id",
                (code, f"91110000000000{n:03d}X", f"{code} Co.", int(ids[park])),
            )
            ids[code] = str((await cur.fetchone() or [0])[0])
            await conn.execute(
                "INSERT INTO site (enterprise_id, code, name, timezone, edge_node_id)"
                " VALUES (%s, 'S', 'Site', 'UTC', 'GW')",
                (int(ids[code]),),
            )
        for code, leader in (("GEAR", "LEAD"), ("TOY", "OUT")):
            cur = await conn.execute(
                "INSERT INTO chain (code, name, leader_id) VALUES (%s, %s, %s) RETURNING id",
                (code, code.title(), int(ids[leader])),
            )
            ids[code] = str((await cur.fetchone() or [0])[0])
        await conn.execute(
            "INSERT INTO chain_member (chain_id, enterprise_id, tier) VALUES (%s, %s, 1)",
            (int(ids["GEAR"]), int(ids["SUP"])),
        )
        await create_client(conn, "sup-partner", "partner", int(ids["SUP"]))
        await conn.commit()
    ids.update({"CN-JS": "CN-JS", "CN-ZJ": "CN-ZJ", "XX-NONE": "XX-NONE", "MISSING": "999999"})
    return ids


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    ids = await seed(database_url)
    # every person signs in from the one test address: more than its default sign-in burst
    limits = {"partner_rate_per_s": 10_000, "partner_burst": 10_000}
    app = create_app(secured(database_url, token_ip_attempts_burst=len(PEOPLE) + 1, **limits))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        headers: dict[str, dict[str, str]] = {"anonymous": {}}
        for name, (role, ent, park, region) in PEOPLE.items():
            headers[name] = await person(
                client,
                database_url,
                name,
                role,  # type: ignore[arg-type]
                int(ids[ent]) if ent else None,
                int(ids[park]) if park else None,
                region,
            )
        partner = Caller("sup-partner", int(ids["SUP"]), "partner")
        headers["sup-partner"] = {"Authorization": f"Bearer {issue_token(partner, TOKEN_KEY, 300)}"}
        forged = jwt.encode(
            {
                "sub": "root",
                "role": "platform_admin",
                "aud": "plantwire-partner",
                "gen": 0,
                "iat": NOW,
                "exp": NOW + timedelta(minutes=5),
            },
            "not-the-platform-key-but-long-enough-0123456789",
            algorithm="HS256",
        )
        headers["forged"] = {"Authorization": f"Bearer {forged}"}
        yield World(client, database_url, ids, headers, dict(every_route(app.routes)))


LEADERS = {"GEAR": "LEAD", "TOY": "OUT"}
CHAIN_RESOURCES: dict[str, list[str | None]] = {
    "person.list": [None],
    "park.create": [None],
    "person.password": [None],
    "chain.create": [None],
    "invitation.list": [None],
    "chain.invite": ["GEAR", "TOY", "MISSING"],
    "chain.leave": ["GEAR", "TOY", "MISSING"],
    "invitation.accept": ["MISSING"],
    "invitation.decline": ["MISSING"],
    "park.register": ["NORTH", "SOUTH", "MISSING"],
    "registration.list": [None],
    "registration.accept": ["MISSING"],
    "registration.decline": ["MISSING"],
    "region.register": ["CN-JS", "CN-ZJ", "XX-NONE"],
    "region_registration.list": [None],
    "region_registration.accept": ["MISSING"],
    "region_registration.decline": ["MISSING"],
}


def chain_expected(caller: str, action: str, resource: str | None) -> tuple[int, str]:
    """Building chains, by hand: bodies are empty (refused as invalid once the caller may), the
    only membership is SUP's in GEAR, there is no invitation, and leaving is tried last."""
    if caller in ("anonymous", "forged"):
        return 401, "invalid_token"
    if caller == "sup-partner":
        return 403, "role_forbidden"
    role, ent, park = PEOPLE[caller][:3]
    if action == "person.list":
        if role in ("platform_admin", "enterprise_admin"):
            return 200, "platform_admin" if role == "platform_admin" else "own_enterprise"
        return 403, "role_forbidden"
    if action == "park.create":  # an empty body
        return (422, "invalid_request") if role == "platform_admin" else (403, "role_forbidden")
    if action == "person.password":
        return 422, "invalid_request"  # anyone's own: an empty body
    if action == "park.register":
        if role == "platform_admin":
            return (404, "not_found") if resource == "MISSING" else (422, "invalid_request")
        if role != "park_authority":
            return 403, "role_forbidden"
        return (422, "invalid_request") if resource == park else (403, "not_bound")
    if action == "region.register":
        if role == "platform_admin":
            return 422, "invalid_request"  # any region: one may be empty before its first
        if role != "region_authority":
            return 403, "role_forbidden"
        return (422, "invalid_request") if resource == PEOPLE[caller][3] else (403, "not_bound")
    if action == "region_registration.list":
        if role in ("platform_admin", "region_authority"):
            return 200, role
        ok = role in ("enterprise_admin", "enterprise_viewer", "chain_analyst")
        return (200, "own_enterprise") if ok else (403, "role_forbidden")
    if action == "registration.list":
        if role in ("platform_admin", "park_authority"):
            return 200, role
        ok = role in ("enterprise_admin", "enterprise_viewer", "chain_analyst")
        return (200, "own_enterprise") if ok else (403, "role_forbidden")
    if action == "invitation.list":
        if role == "platform_admin":
            return 200, "platform_admin"
        ok = role in ("enterprise_admin", "enterprise_viewer", "chain_analyst")
        return (200, "own_enterprise") if ok else (403, "role_forbidden")
    if action in ("chain.create", "chain.invite"):
        if role == "platform_admin":
            return (404, "not_found") if resource == "MISSING" else (422, "invalid_request")
        if role not in ("enterprise_admin", "chain_analyst"):
            return 403, "role_forbidden"
        if action == "chain.create" or LEADERS.get(resource or "") == ent:
            return 422, "invalid_request"
        return 403, "not_bound"
    if role != "enterprise_admin":
        return 403, "role_forbidden"  # platform admins too: answers and leaving are the supplier's
    if resource == "MISSING":
        return 403, "not_bound"
    if (caller, resource) == ("sup-admin", "GEAR"):
        return 204, "own_enterprise"
    return 409, "conflict"


def expected(caller: str, what: str, resource: str | None) -> tuple[int, str]:
    """(status, reason code) the table above says the caller gets."""
    if caller in ("anonymous", "forged"):
        return 401, "invalid_token"
    if caller == "sup-partner":
        return 403, "role_forbidden"
    role = PEOPLE[caller][0]
    may = MAY[caller].get(what, set())
    if role == "platform_admin":
        return (404, "not_found") if resource in ("MISSING", "XX-NONE") else (200, role)
    if role not in READS[what]:
        return 403, "role_forbidden"
    if resource is not None and resource in may:
        if what == "aggregate" and resource == PEOPLE[caller][1]:
            return 200, "own_enterprise"
        if what in ("detail", "manage", "people"):
            return 200, "own_enterprise"
        return 200, {"chain_analyst": "chain_leader"}.get(role, role)
    return 403, "not_bound"


def listed(caller: str, kind: str) -> tuple[int, str, set[str] | None]:
    if caller in ("anonymous", "forged"):
        return 401, "invalid_token", None
    if caller == "sup-partner":
        return 403, "role_forbidden", None
    what = "aggregate" if kind == "enterprises" else kind
    may = MAY[caller].get(what, set())
    if may == EVERYTHING:
        return (
            200,
            "platform_admin",
            {r for r in RESOURCES[kind] if r not in ("MISSING", "XX-NONE")},
        )
    assert isinstance(may, set)
    return 200, "bound_only", may


async def last_audit(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...]:
    cur = await conn.execute(
        "SELECT id, action, outcome, reason, status, client_id FROM partner_audit"
        " ORDER BY id DESC LIMIT 1"
    )
    return tuple(await cur.fetchone() or (0, "", "", "", 0, ""))


async def test_every_route_every_role_every_resource(world: World) -> None:
    w = world
    api = {name: pr for name, pr in w.routes.items() if pr[0].startswith("/api/v1")}
    assert set(api) == set(ROUTES), "a /api/v1 route without an expectation (or a stale one)"
    tried = {"GET", "PUT", "POST", "PATCH"}
    assert all(len(r.methods or ()) == 1 and (r.methods or set()) <= tried for _, r in api.values())
    callers = [*OUTSIDERS, *PEOPLE]
    unexpected: list[str] = []
    decisions = made = 0
    audit = await psycopg.AsyncConnection.connect(w.url, autocommit=True)
    before = (await last_audit(audit))[0]  # then the entry of the decision before
    last = "chain.leave"  # the one that changes what the others see
    for name, (full_path, route) in sorted(api.items(), key=lambda i: (i[0] == last, i[0])):
        shape, what = ROUTES[name]
        [method] = sorted(route.methods or ())
        cases: list[tuple[str | None, str]] = []
        if shape in ("list", "create"):
            cases = [(None, full_path)]
        elif shape == "chainop":
            for res in CHAIN_RESOURCES[name]:
                param = re.search(r"\{\w+\}", full_path)
                at = full_path.replace(param.group(), w.ids[res]) if param and res else full_path
                cases.append((res, at))
        elif shape == "people":
            cases = [(res, full_path) for res in RESOURCES["people"]]
        else:
            kind = "enterprises" if shape == "enterprise" else what
            for res in RESOURCES[kind]:
                name_of = "enterprise_id" if shape == "enterprise" else "group_id"
                at = full_path.replace("{" + name_of + "}", w.ids[res])
                cases.append((res, re.sub(r"\{\w+\}", "X1", at)))  # a site, line, ... code
        for caller in callers:
            for resource, path in cases:
                params = WINDOW if "indicators" in path else {}
                content = b""  # an empty document: refused as invalid once the caller may
                if shape == "people":
                    made += 1
                    content = json.dumps(
                        {"username": f"new{made}", "role": "enterprise_viewer",
                         "enterprise_id": int(w.ids[resource or ""])}
                    ).encode()  # fmt: skip
                got = await w.client.request(
                    method, path, headers=w.headers[caller], params=params, content=content
                )
                json_body = got.headers.get("content-type", "").startswith("application/json")
                body = got.json() if json_body else {}  # a registry export is TOML
                names = None
                if shape == "chainop":
                    status, reason = chain_expected(caller, name, resource)
                elif shape == "list":
                    status, reason, names = listed(caller, what)
                elif shape == "create":
                    status, reason = expected(caller, "people", None)
                    if caller == "root":
                        status, reason = 422, "invalid_request"
                    elif status != 401:
                        status, reason = 403, "role_forbidden"
                else:
                    status, reason = expected(caller, what, resource)
                    if status == 200 and what == "manage":  # an empty body; no gateway X1
                        gateway = ".gateway." in name
                        status, reason = (404, "not_found") if gateway else (422, "invalid_request")
                    if status == 200 and name == "enterprise.machine":
                        status, reason = 404, "not_found"  # no equipment X1 at site X1
                    if what == "people":
                        status = {200: 201, 404: 422}.get(status, status)
                        reason = "invalid_request" if status == 422 else reason
                seen = (got.status_code, body["error"] if got.status_code >= 400 else None)
                want = (status, reason if status >= 400 else None)
                if seen != want:
                    unexpected.append(f"{caller} {path}: {seen} != {want} {body}")
                if names is not None and got.status_code == 200:
                    by_key = {w.ids[r]: r for r in RESOURCES[what]}
                    keys = {by_key.get(str(row["id"]), str(row["id"])) for row in body}
                    if keys != names:
                        unexpected.append(f"{caller} {path}: listed {keys} != {names}")
                entry = await last_audit(audit)
                outcome = "allowed" if status < 400 else "denied"
                if entry[0] != before + 1 or entry[1:5] != (name, outcome, reason, status):
                    unexpected.append(f"{caller} {path}: audit {entry} (after {before})")
                before = entry[0]
                decisions += 1
    await audit.close()
    assert unexpected == [], "\n".join(unexpected[:40])
    # lists; enterprise routes; group routes; registering an enterprise; people
    chain_cases = sum(len(r) for r in CHAIN_RESOURCES.values())
    enterprise_routes = sum(shape == "enterprise" for shape, _ in ROUTES.values())
    assert enterprise_routes == 8 + 8 + 3
    assert decisions == len(callers) * (4 + enterprise_routes * 4 + 3 * 3 + 1 + 3 + chain_cases)


async def test_public_routes_stay_public(database_url: str) -> None:
    async with served(database_url) as client:
        for path in ("/healthz", "/openapi.json"):
            got = await client.get(path)
            assert got.status_code == 200, path
        spec = (await client.get("/openapi.json")).json()
    assert "/auth/token" in spec["paths"] and "/api/v1/enterprises" in spec["paths"]
