"""The nine gaps found when the partner interface was tried as an attacker would (issue 16):
for each, the request that showed it and the answer a correct system gives."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from plantwire_platform.partner.data import encode_cursor
from plantwire_platform.server import create_app
from tests.platform.partner.conftest import SAMPLES, T0, World, grant, serving, settings

H = timedelta(hours=1)


def hourly(machine: str, metric: str, lo: datetime, hi: datetime) -> list[tuple[Any, ...]]:
    """(hour, mean, min, max, n) of a numeric series over the whole hours in [lo, hi),
    computed from the seed."""
    hours: dict[datetime, list[float]] = {}
    for m, name, ts, v in SAMPLES:
        if m == machine and name == metric and lo <= ts < hi:
            hours.setdefault(ts.replace(minute=0), []).append(v)
    return sorted((h, sum(v) / len(v), min(v), max(v), len(v)) for h, v in hours.items())


def rows_of(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (datetime.fromisoformat(i["ts"]), i["value"], i["min"], i["max"], i["n"])
        for i in body["items"]
    )


async def add_sample(w: World, machine: str, metric: str, ts: datetime, value: Any) -> None:
    table = "sample_text" if isinstance(value, str) else "sample_num"
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {table} (series_id, ts, value) SELECT id, %s, %s FROM series"
            " WHERE device_id = %s AND metric = %s",
            (ts, value, machine, metric),
        )


async def audit_rows(w: World, where: str = "true", *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        cur = await conn.execute(
            "SELECT action, outcome, reason, status, client_id FROM partner_audit"
            f" WHERE {where} ORDER BY id",
            args,
        )
        return await cur.fetchall()


async def token(c: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await c.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


async def register(w: World, client_id: str, role: str, ent: str) -> str:
    r = await w.client.post(
        "/partner/v1/clients",
        json={"client_id": client_id, "role": role, "enterprise_id": w.ent[ent]},
        headers=w.auth("admin"),
    )
    assert r.status_code == 201, r.text
    secret: str = r.json()["client_secret"]
    return secret


# -- 1. aggregated grants leak raw values --


async def test_gap1_aggregated_grants_answer_whole_hours_of_at_least_k_samples(
    world: World,
) -> None:
    w = world
    await grant(w, "counts", purpose="planning", equipment_ids=[w.machine["M2"]])
    await grant(w, "states", purpose="planning", equipment_ids=[w.machine["M1"]])
    await add_sample(w, "M2", "Production/PartCount", T0 + 2 * H + timedelta(minutes=5), 7.0)
    url = f"/partner/v1/datasets/{w.dataset['counts']}/counts"

    async def ask(**params: Any) -> dict[str, Any]:
        r = await w.client.get(
            url, params={"purpose": "planning", **params}, headers=w.auth("lead-app")
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["granularity"] == "aggregated"
        return body

    metric = "Production/PartCount"
    # one minute: a correct system has no whole hour to show (today: n=1, min=max=the value)
    minute = {"from": (T0 + timedelta(minutes=10)).isoformat()}
    minute["to"] = (T0 + timedelta(minutes=11)).isoformat()
    assert rows_of(await ask(**minute)) == []
    # 10:30-12:00: the hour from 11:00 only, with all six samples (not 10:30-10:59 as an hour)
    body = await ask(**{"from": (T0 + H / 2).isoformat(), "to": (T0 + 2 * H).isoformat()})
    assert rows_of(body) == hourly("M2", metric, T0 + H, T0 + 2 * H)
    # a crafted cursor in the middle of an hour resumes at the next whole hour
    crafted = encode_cursor(T0 + timedelta(minutes=50), 0)
    body = await ask(cursor=crafted, to=(T0 + 2 * H).isoformat())
    assert rows_of(body) == hourly("M2", metric, T0 + H, T0 + 2 * H)
    # the 12:00 hour holds one sample: fewer than k = 3, so it is not shown at all
    lone = await ask(**{"from": (T0 + 2 * H).isoformat(), "to": (T0 + 3 * H).isoformat()})
    assert lone["items"] == []
    # "last state per hour" of a minute is the raw state of that minute: not shown either
    r = await w.client.get(
        f"/partner/v1/datasets/{w.dataset['states']}/states",
        params={"purpose": "planning", **minute},
        headers=w.auth("lead-app"),
    )
    assert r.status_code == 200 and r.json()["items"] == [], r.text


# -- 2. the audit does not prove its completeness --


async def test_gap2_verification_checks_the_head_and_needs_the_key(world: World) -> None:
    w = world
    await grant(w, "counts", purpose="planning")
    for _ in range(3):
        await w.client.get(
            f"/partner/v1/datasets/{w.dataset['counts']}/counts",
            params={"purpose": "planning"},
            headers=w.auth("lead-app"),
        )

    async def verify(who: str) -> dict[str, Any]:
        r = await w.client.get("/partner/v1/audit/verify", headers=w.auth(who))
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    # both parties can have the chain checked
    for who in ("lead-app", "sup-admin"):
        assert (await verify(who))["ok"] is True
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        cur = await conn.execute("SELECT max(id) FROM partner_audit")
        last = (await cur.fetchone() or (0,))[0]
        # the last rows deleted (past the append-only trigger, as a superuser could)
        await conn.execute("ALTER TABLE partner_audit DISABLE TRIGGER partner_audit_no_change")
        await conn.execute("DELETE FROM partner_audit WHERE id >= %s", (last - 1,))
    result = await verify("lead-app")
    assert result["ok"] is False and "head" in result["problem"], result

    # a row rewritten and every later hash recomputed, head included, without the key
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE partner_audit SET outcome = 'denied', reason = 'no_grant', status = 403"
            " WHERE id = 2"
        )
        cur = await conn.execute("SELECT * FROM partner_audit ORDER BY id")
        names = [d.name for d in cur.description or ()]
        prev = "0" * 64
        for values in await cur.fetchall():
            row = dict(zip(names, values, strict=True))
            content = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
            content["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
            text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
            digest = hashlib.sha256(prev.encode() + b"\n" + text.encode()).hexdigest()
            await conn.execute(
                "UPDATE partner_audit SET prev_hash = %s, hash = %s WHERE id = %s",
                (prev, digest, row["id"]),
            )
            prev = digest
        await conn.execute(
            "UPDATE partner_audit_head SET id = (SELECT max(id) FROM partner_audit), hash = %s",
            (prev,),
        )
    result = await verify("sup-admin")
    assert result["ok"] is False and result["bad_id"] == 1, result


# -- 3. not every decision is audited --


async def test_gap3_every_decision_and_identity_change_is_audited(database_url: str) -> None:
    async with serving(database_url, partner_rate_per_s=1.0, partner_burst=60) as w:
        g = await grant(w, "counts", purpose="planning")
        before = len(await audit_rows(w))
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        counts = f"/partner/v1/datasets/{w.dataset['counts']}/counts"
        calls: list[tuple[str, str, str, dict[str, Any], tuple[str, str, str, int]]] = [
            # (who, method, path, request, expected (action, outcome, reason, status))
            (
                "lead-app",
                "POST",
                f"/grants/{g['id']}/approve",
                {},
                ("grant.approve", "denied", "role_forbidden", 403),
            ),
            (
                "out-admin",
                "POST",
                f"/grants/{g['id']}/revoke",
                {},
                ("grant.revoke", "denied", "not_found", 404),
            ),
            (
                "lead-app",
                "POST",
                "/grants",
                {
                    "json": {
                        "dataset_id": w.dataset["private"],
                        "purpose": "planning",
                        "expires_at": expires,
                    }
                },
                ("grant.request", "denied", "not_found", 404),
            ),
            (
                "sup-app",
                "POST",
                "/grants",
                {
                    "json": {
                        "dataset_id": w.dataset["counts"],
                        "purpose": "planning",
                        "expires_at": expires,
                    }
                },
                ("grant.request", "denied", "invalid_request", 422),
            ),
            ("", "GET", "/catalog", {}, ("catalog.list", "denied", "invalid_token", 401)),
            (
                "lead-app",
                "GET",
                counts,
                {"params": {"purpose": "planning", "cursor": "!!"}},
                ("data.counts", "denied", "invalid_request", 422),
            ),
            (
                "lead-admin",
                "POST",
                "/clients",
                {
                    "json": {
                        "client_id": "lead-erp",
                        "role": "partner",
                        "enterprise_id": w.ent["LEAD"],
                    }
                },
                ("client.create", "allowed", "", 201),
            ),
            (
                "lead-admin",
                "POST",
                "/clients/lead-erp/secrets",
                {},
                ("client.rotate_secret", "allowed", "", 201),
            ),
            (
                "sup-admin",
                "POST",
                "/catalog",
                {
                    "json": {
                        "code": "extra",
                        "title": "X",
                        "kind": "counts",
                        "domain": "d",
                        "grade": "general",
                        "granularity": "aggregated",
                        "purposes": ["planning"],
                    }
                },
                ("catalog.create", "allowed", "", 201),
            ),
            ("lead-app", "GET", "/catalog", {}, ("catalog.list", "allowed", "", 200)),
            (
                "lead-app",
                "GET",
                f"/catalog/{w.dataset['counts']}",
                {},
                ("catalog.read", "allowed", "", 200),
            ),
            ("lead-app", "GET", "/grants", {}, ("grant.list", "allowed", "", 200)),
            ("lead-app", "GET", f"/grants/{g['id']}", {}, ("grant.read", "allowed", "", 200)),
            ("lead-app", "GET", "/audit", {}, ("audit.read", "allowed", "", 200)),
        ]
        expected = []
        for who, method, path, request, outcome in calls:
            full = path if path.startswith("/partner") else f"/partner/v1{path}"
            headers = w.auth(who) if who else {}
            r = await w.client.request(method, full, headers=headers, **request)
            assert (r.status_code, r.json().get("error", "")) == (outcome[3], outcome[2]), (
                path,
                r.text,
            )
            expected.append(outcome)
        # a failed token request
        r = await token(w.client, "lead-app", "wrong")
        assert r.status_code == 401
        expected.append(("token.issue", "denied", "invalid_client", 401))
        # over the rate limit (burst 60; the calls above took some)
        statuses = [
            (await w.client.get("/partner/v1/grants", headers=w.auth("out-app"))).status_code
            for _ in range(70)
        ]
        assert statuses.count(429) >= 1
        audited = [tuple(a[:4]) for a in (await audit_rows(w))[before:]]
        for outcome in expected:
            assert outcome in audited, (outcome, audited)
        assert ("grant.list", "denied", "rate_limited", 429) in audited
        assert ("grant.list", "allowed", "", 200) in audited
        # an unexpected failure: its 500 has the uniform body, and is audited too
        async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
            await conn.execute("ALTER TABLE partner_webhook RENAME COLUMN url TO url_gone")
        r = await w.client.get(f"/partner/v1/grants/{g['id']}/webhooks", headers=w.auth("lead-app"))
        assert (r.status_code, r.json()["error"]) == (500, "internal_error")
        last = (await audit_rows(w))[-1]
        assert last[:4] == ("webhook.list", "failed", "internal_error", 500), last


# -- 4. tokens outlive their client --


async def test_gap4_tokens_die_with_their_client(world: World) -> None:
    w = world
    await grant(w, "counts", purpose="planning")
    secret = await register(w, "lead-erp", "partner", "LEAD")

    async def bearer() -> dict[str, str]:
        r = await token(w.client, "lead-erp", secret)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    url = f"/partner/v1/datasets/{w.dataset['counts']}/counts"

    async def read(auth: dict[str, str]) -> tuple[int, str]:
        r = await w.client.get(url, params={"purpose": "planning"}, headers=auth)
        return r.status_code, r.json().get("error", "") if r.status_code >= 400 else ""

    # disabled in the database: its unexpired token stops at once
    auth = await bearer()
    assert await read(auth) == (200, "")
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        await conn.execute("UPDATE partner_client SET disabled_at = now() WHERE id = 'lead-erp'")
    assert await read(auth) == (401, "invalid_token")
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        await conn.execute("UPDATE partner_client SET disabled_at = NULL WHERE id = 'lead-erp'")

    # routes: revoke its tokens, disable it (its enterprise admin), enable it again
    auth = await bearer()
    assert await read(auth) == (200, "")
    r = await w.client.post(
        "/partner/v1/clients/lead-erp/revoke-tokens", headers=w.auth("lead-admin")
    )
    assert r.status_code == 200, r.text
    assert await read(auth) == (401, "invalid_token")
    auth = await bearer()  # a new token works
    assert await read(auth) == (200, "")
    other = await w.client.post("/partner/v1/clients/lead-erp/disable", headers=w.auth("sup-admin"))
    assert (other.status_code, other.json()["error"]) == (404, "not_found")
    r = await w.client.post("/partner/v1/clients/lead-erp/disable", headers=w.auth("lead-admin"))
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    assert await read(auth) == (401, "invalid_token")
    assert (await token(w.client, "lead-erp", secret)).status_code == 401
    r = await w.client.post("/partner/v1/clients/lead-erp/enable", headers=w.auth("lead-admin"))
    assert r.status_code == 200 and r.json()["disabled"] is False, r.text
    assert await read(auth) == (401, "invalid_token")  # tokens from before stay dead
    auth = await bearer()
    assert await read(auth) == (200, "")

    # deleted: its token stops at once
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        await conn.execute("DELETE FROM partner_client WHERE id = 'lead-erp'")
    assert await read(auth) == (401, "invalid_token")


# -- 5. credential guessing is not throttled --


async def test_gap5_token_attempts_are_throttled_globally_per_ip_and_per_id(
    world: World,
) -> None:
    w = world
    secret = await register(w, "lead-erp", "partner", "LEAD")

    def from_ip(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=w.app, client=(ip, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    # spraying 60 client ids from one address: throttled long before 60 secret checks
    async with from_ip("198.51.100.7") as attacker:
        answers = await asyncio.gather(*(token(attacker, f"guess-{i}", "x") for i in range(60)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) <= 10 and statuses.count(429) >= 50, statuses
    for a in answers:
        if a.status_code == 429:
            assert a.json()["error"] == "rate_limited" and int(a.headers["retry-after"]) >= 1
    # another address is not held back by it
    async with from_ip("192.0.2.10") as honest:
        assert (await token(honest, "lead-erp", secret)).status_code == 200

    # one id guessed from many addresses: after a few failures it is held back (backoff),
    # whoever asks, for a growing time
    waits = []
    for n in range(8):
        async with from_ip(f"203.0.113.{n + 1}") as c:
            r = await token(c, "lead-erp", "wrong")
            if r.status_code == 429:
                waits.append(int(r.headers["retry-after"]))
    assert len(waits) >= 3 and waits == sorted(waits) and waits[-1] > waits[0], waits
    async with from_ip("203.0.113.99") as c:
        assert (await token(c, "lead-erp", secret)).status_code == 429

    # many addresses, one attempt each: the global limit caps the secret checks (here an API
    # process allowing 5 at once and one every 10 s, on the same database)
    app = create_app(settings(w.url, token_attempts_per_s=0.1, token_attempts_burst=5))
    async with app.router.lifespan_context(app):

        async def once(n: int) -> int:
            transport = httpx.ASGITransport(app=app, client=(f"10.9.0.{n + 1}", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return (await token(c, f"spray-{n}", "x")).status_code

        statuses = list(await asyncio.gather(*(once(n) for n in range(60))))
    assert statuses.count(401) <= 8 and statuses.count(429) >= 52, statuses


# -- 6. streams bypass the limits --


async def test_gap6_streams_are_capped_spaced_and_audited_once_per_session(world: World) -> None:
    w = world
    start, end = (T0 - H).isoformat(), (T0 + 2 * H).isoformat()
    g = await grant(w, "ind", purpose="quality", window_start=start, window_end=end)
    url = f"/partner/v1/datasets/{w.dataset['ind']}/indicators/stream"
    # the default minimum interval refuses a stream polling every 50 ms
    fast = await w.client.get(
        url,
        params={"purpose": "quality", "interval_s": 0.05, "max_events": 1},
        headers=w.auth("lead-app"),
    )
    assert fast.status_code == 422 and fast.json()["error"] == "invalid_request", fast.text

    # a second API process on the same database, allowing fast streams, two per client
    app = create_app(
        settings(w.url, partner_stream_min_interval_s=0.05, partner_streams_per_client=2)
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as c,
    ):
        params: dict[str, Any] = {"purpose": "quality", "from": start, "interval_s": 0.05}

        def stream(**extra: Any) -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(
                c.get(url, params={**params, **extra}, headers=w.auth("lead-app"))
            )

        # new data keeps changing the values, so each tick has something to send
        async def feed() -> None:
            for minute in range(20, 60):
                mode = "MDI" if minute % 2 else "AUTO"
                await add_sample(w, "M1", "State/Mode", T0 + timedelta(minutes=minute), mode)
                await asyncio.sleep(0.05)

        feeding = asyncio.create_task(feed())
        done = await stream(max_events=3)
        feeding.cancel()
        assert done.status_code == 200 and done.text.count("event: indicators") == 3
        opened = "action = 'data.indicators.stream' AND outcome = 'allowed'"
        sessions = await audit_rows(w, opened)
        assert len(sessions) == 1, sessions  # three events, one session, one entry

        first, second = stream(), stream()
        await until(lambda: audit_rows(w, opened), 3)
        third = await c.get(url, params=params, headers=w.auth("lead-app"))
        assert (third.status_code, third.json()["error"]) == (429, "rate_limited"), third.text
        r = await w.client.post(f"/partner/v1/grants/{g['id']}/revoke", headers=w.auth("sup-admin"))
        assert r.status_code == 200
        for task in (first, second):
            assert "event: denied" in (await asyncio.wait_for(task, 30)).text


async def until(rows: Callable[[], Awaitable[list[Any]]], count: int) -> None:
    while len(await rows()) < count:
        await asyncio.sleep(0.02)


# -- 7. sibling suppliers read each other --


async def test_gap7_chain_visibility_is_the_suppliers_choice_and_expiry_is_bounded(
    world: World,
) -> None:
    w = world
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    # SIB, a sibling supplier of the chain, neither sees SUP's datasets nor obtains them
    listed = await w.client.get("/partner/v1/catalog", headers=w.auth("sib-app"))
    assert listed.status_code == 200 and listed.json()["items"] == []
    raw = {"dataset_id": w.dataset["states"], "purpose": "planning", "granularity": "raw"}
    r = await w.client.post(
        "/partner/v1/grants", json={**raw, "expires_at": expires}, headers=w.auth("sib-app")
    )
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text
    # a dataset the supplier opens to every member: the sibling sees it, but its request
    # waits for the supplier's decision
    made = await w.client.post(
        "/partner/v1/catalog",
        headers=w.auth("sup-admin"),
        json={
            "code": "shared",
            "title": "Shared states",
            "kind": "states",
            "domain": "production",
            "grade": "general",
            "granularity": "raw",
            "purposes": ["planning"],
            "visibility": "chain",
            "chain_audience": "members",
        },
    )
    assert made.status_code == 201, made.text
    asked = await w.client.post(
        "/partner/v1/grants",
        json={**raw, "dataset_id": made.json()["id"], "expires_at": expires},
        headers=w.auth("sib-app"),
    )
    assert asked.status_code == 201 and asked.json()["status"] == "requested", asked.text
    # the chain leader's request is approved at once, as before
    lead = await w.client.post(
        "/partner/v1/grants", json={**raw, "expires_at": expires}, headers=w.auth("lead-app")
    )
    assert lead.status_code == 201 and lead.json()["status"] == "approved", lead.text
    # expiry: at most a year ahead by default, never in the past
    for when in ("9999-12-31T00:00:00Z", "2020-01-01T00:00:00Z"):
        r = await w.client.post(
            "/partner/v1/grants", json={**raw, "expires_at": when}, headers=w.auth("lead-app")
        )
        assert (r.status_code, r.json()["error"]) == (422, "invalid_request"), (when, r.text)


# -- 8. row endpoints without `to` return nothing --


async def test_gap8_rows_without_to_run_up_to_now(world: World) -> None:
    w = world
    await grant(w, "counts", purpose="planning", equipment_ids=[w.machine["M2"]])
    url = f"/partner/v1/datasets/{w.dataset['counts']}/counts"
    everything = hourly("M2", "Production/PartCount", T0 - 2 * H, T0 + 3 * H)
    r = await w.client.get(url, params={"purpose": "planning"}, headers=w.auth("lead-app"))
    assert r.status_code == 200 and rows_of(r.json()) == everything, r.text
    r = await w.client.get(
        url, params={"purpose": "planning", "from": T0.isoformat()}, headers=w.auth("lead-app")
    )
    assert rows_of(r.json()) == [x for x in everything if x[0] >= T0]
    # the supplier reading its own dataset
    own = await w.client.get(
        url, params={"purpose": "planning", "equipment": w.machine["M2"]}, headers=w.auth("sup-app")
    )
    assert rows_of(own.json()) == everything
    audited = await audit_rows(w, "action = 'data.counts' AND outcome = 'allowed'")
    assert len(audited) == 3
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        cur = await conn.execute(
            "SELECT rows FROM partner_audit WHERE action = 'data.counts' ORDER BY id"
        )
        assert [r[0] for r in await cur.fetchall()] == [3, 2, 3]


# -- 9. 500s with plain-text bodies --


async def test_gap9_input_errors_are_422_with_the_uniform_body(world: World) -> None:
    w = world
    await grant(w, "ind", purpose="quality")
    await grant(w, "counts", purpose="planning")
    ind = f"/partner/v1/datasets/{w.dataset['ind']}/indicators"
    counts = f"/partner/v1/datasets/{w.dataset['counts']}/counts"
    sup = f"/api/v1/enterprises/{w.ent['SUP']}/indicators"
    for path, params in (
        # the last second before year 10000, 23:59 ahead of UTC (OverflowError in the calendar)
        (ind, {"purpose": "quality", "to": "9999-12-31T23:59:59+23:59"}),
        (ind, {"purpose": "quality", "from": "0001-01-01T00:00:00Z"}),
        (sup, {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}),
        (sup, {"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T23:59:59+23:59"}),
        (counts, {"purpose": "planning", "to": "9999-12-31T23:59:59+23:59"}),
        ("/api/v1/regions/%00/indicators", {}),  # a NUL byte (DataError in PostgreSQL)
        (counts, {"purpose": "planning", "fields": "Production/\x00PartCount"}),
        (counts, {"purpose": "plan\x00ning"}),
    ):
        who = "admin" if path.startswith("/api/v1") else "lead-app"
        r = await w.client.get(path, params=params, headers=w.auth(who))
        assert r.status_code == 422, (path, params, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json", (path, r.text)
        assert r.json()["error"] == "invalid_request" and set(r.json()) == {"error", "detail"}
    # found by schemathesis: '¹' passes str.isdigit, not int(): no such chain, not a 500
    r = await w.client.get("/api/v1/chains/\u00b9/indicators", headers=w.auth("admin"))
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text
    # the latest window allowed is computed (the calendar holds up to year 10000)
    r = await w.client.get(
        ind,
        params={"purpose": "quality", "to": "2200-01-01T00:00:00Z"},
        headers=w.auth("lead-app"),
    )
    assert r.status_code == 200, r.text
    assert [p["to"] for p in r.json()["items"]] == ["2200-01-01T00:00:00Z"]
