"""The authorization matrix: every data endpoint x caller x grant situation, with the expected
status and reason code, and every granted answer compared with the rows the grant allows,
computed from the seed independently of the SQL under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.platform.partner.conftest import EVENTS, SAMPLES, T0, World, grant

WINDOW = {
    "from": (T0 - timedelta(hours=1)).isoformat(),
    "to": (T0 + timedelta(hours=2)).isoformat(),
}
KIND = {
    "ind": "indicators",
    "states": "states",
    "counts": "counts",
    "telem": "telemetry",
    "alarms": "alarms",
}
# the states grant covers 10:00-11:00 only; asking for more is out of scope
IN_WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}
PURPOSE = {
    "ind": "quality",
    "states": "planning",
    "counts": "planning",
    "telem": "maintenance",
    "alarms": "quality",
}


def expected_rows(w: World, code: str) -> list[tuple[Any, ...]]:
    """What each granted dataset may return: (time, machine, metric, value, n)."""
    if code == "states":  # site S1 only, 10:00-11:00, raw
        return sorted(
            (ts, m, metric, v, 1)
            for m, metric, ts, v in SAMPLES
            if m == "M1" and metric.startswith("State/") and T0 <= ts < T0 + timedelta(hours=1)
        )
    if code == "counts":  # machine M2 only, hourly mean
        hours: dict[datetime, list[float]] = {}
        for m, metric, ts, v in SAMPLES:
            if m == "M2" and metric == "Production/PartCount":
                hours.setdefault(ts.replace(minute=0), []).append(v)
        return sorted(
            (h, "M2", "Production/PartCount", sum(vs) / len(vs), len(vs)) for h, vs in hours.items()
        )
    if code == "alarms":  # site S2 (M2), the overload alarm only, per hour: count, last value
        by_hour: dict[datetime, list[tuple[datetime, str]]] = {}
        for m, _, name, ts, v in EVENTS:
            if m == "M2" and name == "Alarm/SpindleOverload":
                by_hour.setdefault(ts.replace(minute=0), []).append((ts, v))
        return sorted(
            (h, "M2", "Alarm/SpindleOverload", max(vs)[1], len(vs)) for h, vs in by_hour.items()
        )
    assert code == "telem"  # M1, Spindle/Speed only, raw, unbounded window
    return sorted(
        (ts, m, metric, v, 1)
        for m, metric, ts, v in SAMPLES
        if m == "M1" and metric == "Spindle/Speed"
    )


def got_rows(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (datetime.fromisoformat(i["ts"]), i["equipment"], i["metric"], i["value"], i["n"])
        for i in body["items"]
    )


async def call(
    w: World, who: str | None, code: str, purpose: str | None = None, **params: Any
) -> tuple[int, dict[str, Any]]:
    query = {
        **(IN_WINDOW if code == "states" else WINDOW),
        "purpose": purpose or PURPOSE.get(code, "planning"),
        **params,
    }
    headers = w.auth(who) if who else {}
    url = f"/partner/v1/datasets/{w.dataset[code]}/{KIND.get(code, 'counts')}"
    if code == "core":
        url = f"/partner/v1/datasets/{w.dataset[code]}/telemetry"
    r = await w.client.get(url, params=query, headers=headers)
    return r.status_code, r.json()


async def test_authorization_matrix(world: World) -> None:
    w = world
    grants = {
        "ind": await grant(
            w, "ind", purpose="quality", window_start=WINDOW["from"], window_end=WINDOW["to"]
        ),
        "states": await grant(
            w,
            "states",
            purpose="planning",
            site_ids=[w.site["S1"]],
            granularity="raw",
            window_start=T0.isoformat(),
            window_end=(T0 + timedelta(hours=1)).isoformat(),
        ),
        "counts": await grant(w, "counts", purpose="planning", equipment_ids=[w.machine["M2"]]),
        "telem": await grant(
            w,
            "telem",
            purpose="maintenance",
            fields=["Spindle/Speed"],
            granularity="raw",
            equipment_ids=[w.machine["M1"]],
        ),
        "alarms": await grant(
            w,
            "alarms",
            purpose="quality",
            site_ids=[w.site["S2"]],
            fields=["Alarm/SpindleOverload"],
        ),
    }
    out_of_scope: dict[str, dict[str, Any]] = {
        "ind": {"from": (T0 - timedelta(hours=3)).isoformat()},
        "states": {"sites": [w.site["S2"]], "from": WINDOW["from"]},
        "counts": {"equipment": [w.machine["M1"]]},
        "telem": {"fields": ["Spindle/Load"]},
        "alarms": {"sites": [w.site["S1"]]},
    }
    seen: list[tuple[str, str, str, int, str]] = []

    async def expect(
        case: str, who: str | None, code: str, status: int, reason: str, **kw: Any
    ) -> dict[str, Any]:
        got, body = await call(w, who, code, **kw)
        seen.append((case, who or "-", code, got, body.get("error", "")))
        assert (got, body.get("error", "")) == (status, reason), (case, who, code, body)
        return body

    for code in KIND:
        # granted: the partner's clients see exactly what the grant allows
        for who in ("lead-app", "lead-admin"):
            body = await expect("granted", who, code, 200, "")
            assert body["grant_id"] == grants[code]["id"]
            if code == "ind":  # the engine's own answer for the supplier over that window
                r = await w.client.get(
                    f"/api/v1/enterprises/{w.ent['SUP']}/indicators",
                    params=WINDOW,
                    headers=w.auth("admin"),
                )
                mine = [
                    {k: v for k, v in i.items() if v is not None}
                    for i in body["items"][0]["indicators"]
                ]
                assert mine == r.json()["indicators"]
                assert body["items"][0]["indicators"]
            else:
                assert got_rows(body) == expected_rows(w, code), code
        # own data: the supplier reads its dataset without a grant
        for who in ("sup-app", "sup-admin"):
            body = await expect("own", who, code, 200, "")
            assert body["grant_id"] is None
        # another tenant, outside the chain: the dataset does not exist for it
        for who in ("out-app", "out-admin"):
            await expect("other tenant", who, code, 404, "not_found")
        await expect("platform admin", "admin", code, 403, "role_forbidden")
        await expect("no token", None, code, 401, "invalid_token")
        await expect("wrong purpose", "lead-app", code, 403, "wrong_purpose", purpose="resale")
        await expect("out of scope", "lead-app", code, 403, "out_of_scope", **out_of_scope[code])

    await expect("no grant", "lead-app", "private", 404, "not_found")  # private: invisible
    await expect("core", "lead-app", "core", 403, "grade_forbidden")
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        await conn.execute(
            "UPDATE partner_grant SET expires_at = now() - interval '1 s'"
            " WHERE dataset_id = ANY(%s)",
            ([w.dataset[c] for c in KIND],),
        )
        await conn.commit()
    for code in KIND:
        await expect("expired", "lead-app", code, 403, "expired")
        await expect("expired, own", "sup-app", code, 200, "")
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        await conn.execute(
            "UPDATE partner_grant SET expires_at = now() + interval '1 day', status = 'revoked'"
            " WHERE dataset_id = ANY(%s)",
            ([w.dataset[c] for c in KIND],),
        )
        await conn.commit()
    for code in KIND:
        await expect("revoked", "lead-app", code, 403, "revoked")
        await expect(
            "revoked, other purpose", "lead-app", code, 403, "wrong_purpose", purpose="resale"
        )
    # a dataset visible through the chain that LEAD holds no grant on
    r = await w.client.post(
        "/partner/v1/catalog",
        headers=w.auth("sup-admin"),
        json={
            "code": "extra",
            "title": "Extra counts",
            "kind": "counts",
            "domain": "quality",
            "grade": "general",
            "granularity": "aggregated",
            "purposes": ["planning"],
        },
    )
    assert r.status_code == 201, r.text
    w.dataset["extra"] = r.json()["id"]
    await expect("no grant", "lead-app", "extra", 403, "no_grant")

    # every decision is in the audit, allowed and denied alike, unauthenticated calls too
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        cur = await conn.execute(
            "SELECT outcome, reason FROM partner_audit WHERE action LIKE 'data.%' ORDER BY id"
        )
        audited = await cur.fetchall()
    assert [(("allowed", "") if s[3] == 200 else ("denied", s[4])) for s in seen] == [
        tuple(a) for a in audited
    ]
    assert datetime.now(UTC) > T0


CALLER_ORDER = ("admin", "sup-admin", "sup-app", "lead-admin", "lead-app", "out-admin", "out-app")


async def test_management_matrix(world: World) -> None:
    """Catalog, grant and audit endpoints x every caller: (status, error code) per caller in
    CALLER_ORDER, for a supplier SUP, its chain leader LEAD and OUT outside the chain."""
    w = world
    g = await grant(w, "counts", purpose="planning")
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ok, hidden, role = (200, ""), (404, "not_found"), (403, "role_forbidden")
    created, conflict = (201, ""), (409, "conflict")
    own = (422, "invalid_request")
    cases: list[tuple[str, str, dict[str, Any] | None, list[tuple[int, str]]]] = [
        ("GET", f"/catalog/{w.dataset['ind']}", None, [ok, ok, ok, ok, ok, hidden, hidden]),
        (
            "GET",
            f"/catalog/{w.dataset['private']}",
            None,
            [ok, ok, ok, hidden, hidden, hidden, hidden],
        ),
        ("GET", f"/grants/{g['id']}", None, [ok, ok, ok, ok, ok, hidden, hidden]),
        (
            "POST",
            f"/grants/{g['id']}/approve",
            None,
            [role, conflict, role, role, role, hidden, hidden],
        ),
        (
            "POST",
            f"/grants/{g['id']}/activate",
            None,
            [role, role, role, conflict, conflict, hidden, hidden],
        ),
        (
            "POST",
            "/grants",
            {"dataset_id": w.dataset["states"], "purpose": "planning", "expires_at": expires},
            [role, own, own, created, created, hidden, hidden],
        ),
        ("GET", "/audit", None, [ok] * 7),
        ("GET", "/grants", None, [ok] * 7),
    ]
    for method, path, body, expected in cases:
        got = []
        for who in CALLER_ORDER:
            r = await w.client.request(method, f"/partner/v1{path}", json=body, headers=w.auth(who))
            got.append((r.status_code, r.json().get("error", "") if r.status_code >= 400 else ""))
        assert got == expected, (method, path, list(zip(CALLER_ORDER, got, strict=True)))
    # adding to a catalog: enterprise admins, for their own enterprise only
    for who, status in zip(CALLER_ORDER, (403, 201, 403, 201, 403, 201, 403), strict=True):
        r = await w.client.post(
            "/partner/v1/catalog",
            headers=w.auth(who),
            json={
                "code": f"c-{who}",
                "title": "T",
                "kind": "counts",
                "domain": "d",
                "grade": "general",
                "granularity": "aggregated",
                "purposes": ["p"],
            },
        )
        assert r.status_code == status, (who, r.text)
        if status == 201:
            assert r.json()["enterprise_id"] == w.ent[who.split("-")[0].upper()]
