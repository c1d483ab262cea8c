"""Live indicator updates over Server-Sent Events: the first event carries the engine's values,
and revoking the grant ends the stream with a ``denied`` event naming the reason."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import psycopg

from tests.platform.partner.conftest import T0, World, grant, serving

START = (T0 - timedelta(hours=1)).isoformat()


def events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


async def test_stream_sends_values_then_the_revocation(database_url: str) -> None:
    async with serving(database_url, partner_stream_min_interval_s=0.05) as w:
        await values_then_revocation(w)


async def values_then_revocation(w: World) -> None:
    g = await grant(
        w,
        "ind",
        purpose="quality",
        window_start=START,
        window_end=(T0 + timedelta(hours=2)).isoformat(),
    )
    url = f"/partner/v1/datasets/{w.dataset['ind']}/indicators/stream"
    params: dict[str, Any] = {"purpose": "quality", "from": START, "max_events": 1}
    r = await w.client.get(url, params=params, headers=w.auth("lead-app"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    [(name, body)] = events(r.text)
    engine = await w.client.get(
        f"/api/v1/enterprises/{w.ent['SUP']}/indicators",
        params={"from": START, "to": (T0 + timedelta(hours=2)).isoformat()},
        headers=w.auth("admin"),
    )
    assert name == "indicators" and body["grant_id"] == g["id"]
    assert body["indicators"] == engine.json()["indicators"]

    # an open stream: revoke once it has started, and it ends with the reason
    params = {"purpose": "quality", "from": START, "interval_s": 0.05}
    task = asyncio.create_task(w.client.get(url, params=params, headers=w.auth("lead-app")))
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        while True:  # wait for the stream's first audited read
            cur = await conn.execute(
                "SELECT count(*) FROM partner_audit WHERE action = 'data.indicators.stream'"
            )
            if (await cur.fetchone() or (0,))[0] >= 2 or task.done():
                break
            await asyncio.sleep(0.02)
    revoked = await w.client.post(
        f"/partner/v1/grants/{g['id']}/revoke", headers=w.auth("sup-admin")
    )
    assert revoked.status_code == 200
    streamed = events((await asyncio.wait_for(task, 30)).text)
    assert streamed[0][0] == "indicators"
    assert streamed[-1] == (
        "denied",
        {"error": "revoked", "detail": "revoked for purpose 'quality'"},
    )
    again = await w.client.get(url, params={"purpose": "quality"}, headers=w.auth("lead-app"))
    assert (again.status_code, again.json()["error"]) == (403, "revoked")


async def test_stream_ends_when_its_client_is_disabled(database_url: str) -> None:
    async with serving(database_url, partner_stream_min_interval_s=0.05) as w:
        await grant(w, "ind", purpose="quality", window_start=START)
        url = f"/partner/v1/datasets/{w.dataset['ind']}/indicators/stream"
        params: dict[str, Any] = {"purpose": "quality", "from": START, "interval_s": 0.05}
        chinese = {**w.auth("lead-app"), "Accept-Language": "zh-CN"}
        task = asyncio.create_task(w.client.get(url, params=params, headers=chinese))
        async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
            while not task.done():  # the stream's opening is audited before it sends
                cur = await conn.execute(
                    "SELECT count(*) FROM partner_audit WHERE action = 'data.indicators.stream'"
                )
                if (await cur.fetchone() or (0,))[0] >= 1:
                    break
                await asyncio.sleep(0.02)
        r = await w.client.post("/partner/v1/clients/lead-app/disable", headers=w.auth("admin"))
        assert r.status_code == 200, r.text
        answer = await asyncio.wait_for(task, 30)
        streamed = events(answer.text)
        assert streamed[0][0] == "indicators"
        assert streamed[-1] == (
            "denied",
            {"error": "invalid_token", "detail": "客户端已停用或不存在，或其令牌已被吊销"},
        )
        # worded in the reader's language, so caches keep one answer per language
        assert answer.headers["vary"] == "Accept-Language, Cookie"
