"""Signed webhooks against a real HTTP receiver on a local port: the receiver checks every
signature itself (HMAC-SHA256 over "<timestamp>." + body with the secret shown at registration),
fails the first delivery so it is retried, sees a data change arrive, and receives nothing once
the grant is revoked or has expired. Every delivery is in the audit log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from plantwire_platform.partner import audit_chain
from plantwire_platform.partner.audit_chain import AuditKey
from tests.platform.partner.conftest import AUDIT_KEY, T0, World, grant, serving

START = (T0 - timedelta(hours=1)).isoformat()
END = (T0 + timedelta(hours=2)).isoformat()


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server that records each POST and answers the next status queued
    (200 once the queue is empty)."""

    answers: list[int] = field(default_factory=list)
    got: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.got.setdefault(path, []).append((headers, body))
        status = self.answers.pop(0) if self.answers else 200
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        self.arrived.set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 30)


def verified(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The payload, if its signature is right (computed here, not with the platform's code)."""
    expected = hmac.new(
        secret.encode(), headers["plantwire-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["plantwire-signature"], f"v1={expected}")
    payload: dict[str, Any] = json.loads(body)
    return payload


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[tuple[World, Receiver]]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with (
        server,
        serving(
            database_url,
            webhook_interval_s=0.1,
            webhook_retry_s=0.1,
            webhook_private_targets=True,
        ) as w,
    ):
        yield w, receiver


async def engine(w: World) -> list[dict[str, Any]]:
    r = await w.client.get(
        f"/api/v1/enterprises/{w.ent['SUP']}/indicators",
        params={"from": START, "to": END},
        headers=w.auth("admin"),
    )
    values: list[dict[str, Any]] = r.json()["indicators"]
    return values


async def add_mdi(w: World, machine: str, minute: int) -> None:
    """M-code manual data input on ``machine`` from T0 + ``minute``: changes its MDI share."""
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        await conn.execute(
            "INSERT INTO sample_text (series_id, ts, value) SELECT id, %s, 'MDI' FROM series"
            " WHERE device_id = %s AND metric = 'State/Mode'",
            (T0 + timedelta(minutes=minute), machine),
        )
        await conn.commit()


async def test_signed_deliveries_retry_change_and_stop(
    live: tuple[World, Receiver],
) -> None:
    w, receiver = live
    a = await grant(w, "ind", purpose="quality", window_start=START, window_end=END)
    b = await grant(w, "ind", purpose="planning", window_start=START, window_end=END)
    url = f"/partner/v1/grants/{a['id']}/webhooks"
    body = {"url": receiver.url("/a"), "window_start": START}
    refused = {
        "sup-admin": (403, "role_forbidden"),  # the supplier does not subscribe
        "out-app": (404, "not_found"),  # not a party to the grant
    }
    for who, expected in refused.items():
        r = await w.client.post(url, json=body, headers=w.auth(who))
        assert (r.status_code, r.json()["error"]) == expected, r.text
    r = await w.client.post(url, json={"url": "ftp://x/y"}, headers=w.auth("lead-app"))
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")

    receiver.answers = [503]  # the first delivery fails and is retried
    r = await w.client.post(url, json=body, headers=w.auth("lead-app"))
    assert r.status_code == 201, r.text
    hook_a = r.json()
    r = await w.client.post(
        f"/partner/v1/grants/{b['id']}/webhooks",
        json={"url": receiver.url("/b"), "window_start": START},
        headers=w.auth("lead-admin"),
    )
    assert r.status_code == 201, r.text
    hook_b = r.json()
    assert hook_a["secret"] != hook_b["secret"]
    listed = await w.client.get(url, headers=w.auth("sup-admin"))  # both parties see them
    assert [h["id"] for h in listed.json()] == [hook_a["id"]]
    assert "secret" not in listed.json()[0]

    await receiver.until(lambda: len(receiver.got.get("/a", [])) >= 2)
    (h1, raw1), (h2, raw2) = receiver.got["/a"][:2]
    first, retried = verified(hook_a["secret"], h1, raw1), verified(hook_a["secret"], h2, raw2)
    assert h1["plantwire-event-id"] == h2["plantwire-event-id"] and first == retried
    assert first["grant_id"] == a["id"] and first["webhook_id"] == hook_a["id"]
    assert first["indicators"] == await engine(w)
    with pytest.raises(AssertionError):  # a signature under another secret does not verify
        verified(hook_b["secret"], h1, raw1)

    # new data: both webhooks deliver the new values
    await add_mdi(w, "M1", 65)
    changed = await engine(w)
    assert changed != first["indicators"]

    def has(path: str, values: list[dict[str, Any]], secret: str) -> bool:
        return any(verified(secret, h, x)["indicators"] == values for h, x in receiver.got[path])

    await receiver.until(lambda: has("/a", changed, hook_a["secret"]))
    await receiver.until(lambda: has("/b", changed, hook_b["secret"]))

    # revoked: webhook A stops at once; B, still granted, shows the dispatcher kept going
    r = await w.client.post(f"/partner/v1/grants/{a['id']}/revoke", headers=w.auth("sup-admin"))
    assert r.status_code == 200
    [stopped] = (await w.client.get(url, headers=w.auth("lead-app"))).json()
    assert (stopped["status"], stopped["stop_reason"]) == ("stopped", "revoked")
    sent_to_a = len(receiver.got["/a"])
    await add_mdi(w, "M2", 95)
    after = await engine(w)
    await receiver.until(lambda: has("/b", after, hook_b["secret"]))
    assert len(receiver.got["/a"]) == sent_to_a

    # expired: the next check of B is denied, audited, and B stops without sending
    sent_to_b = len(receiver.got["/b"])
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE partner_grant SET expires_at = now() - interval '1 s' WHERE id = %s",
            (b["id"],),
        )
        await add_mdi(w, "M1", 100)
        while True:
            cur = await conn.execute(
                "SELECT status, stop_reason FROM partner_webhook WHERE id = %s", (hook_b["id"],)
            )
            if await cur.fetchone() == ("stopped", "expired"):
                break
            await asyncio.sleep(0.05)
        assert len(receiver.got["/b"]) == sent_to_b

        # every delivery attempt was audited before it went out, the expiry as a denial
        cur = await conn.execute(
            "SELECT grant_id, outcome, reason FROM partner_audit"
            " WHERE action = 'data.indicators.webhook' ORDER BY id"
        )
        rows = await cur.fetchall()
        verdict = await audit_chain.verify(conn, AuditKey(AUDIT_KEY))
    sent = {a["id"]: len(receiver.got["/a"]), b["id"]: len(receiver.got["/b"])}
    allowed = [g for g, outcome, _ in rows if outcome == "allowed"]
    assert {g: allowed.count(g) for g in sent} == sent
    denied = [(g, r) for g, o, r in rows if o == "denied"]
    # (a check of A that had begun when the revocation committed ends in a denial too)
    assert denied.count((b["id"], "expired")) == 1
    assert set(denied) <= {(b["id"], "expired"), (a["id"], "revoked")}
    assert verdict.ok, verdict
