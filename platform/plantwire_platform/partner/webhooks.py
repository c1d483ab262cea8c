"""Signed webhooks for granted indicators.

A partner client registers a URL for one of its enterprise's grants on an indicator dataset and
receives a secret, shown once. The dispatcher of every API process
(:mod:`plantwire_platform.partner.delivery`) then checks the webhooks that are due (each check
decides access for that grant afresh, exactly like a data call) and, when the indicators differ
from the last ones queued, queues them as the webhook's pending payload. Deliveries POST the
payload with

    Plantwire-Timestamp: <unix seconds>
    Plantwire-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
    Plantwire-Event-Id: <webhook id>.<sequence number>

and retry failures with exponential backoff; after ``webhook_max_attempts`` failed attempts the
webhook stops ('failing'). Revoking or terminating the grant stops its webhooks in the same
transaction; every check and every delivery re-reads the grant, so expiry stops them too and no
delivery starts after either. Every delivery attempt is audited (``data.indicators.webhook``)
and committed before the POST is sent; its ``status`` in the audit is 0, the receiver's answer
is kept on the webhook (``last_status``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from psycopg import AsyncConnection
from pydantic import BaseModel, Field

from plantwire_platform.errors import ApiError
from plantwire_platform.partner import grants
from plantwire_platform.partner.context import Conn, Id, Note, Noted, Who, record, utc
from plantwire_platform.partner.tokens import Caller
from plantwire_platform.translation import Text

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context

ACTION = "data.indicators.webhook"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Plantwire-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


class WebhookIn(BaseModel):
    url: str = Field(min_length=8, max_length=2000, description="https URL to POST changes to")
    window_start: datetime | None = Field(
        default=None,
        description="indicators from this time up to now; default: the last hour, sliding",
    )


class Webhook(BaseModel):
    id: int
    grant_id: int
    url: str
    window_start: datetime | None
    status: str = Field(description="active or stopped")
    stop_reason: str = Field(description="revoked, expired, no_grant, failing or deleted")
    delivered: int
    attempts: int = Field(description="failed attempts of the payload now pending")
    last_status: int | None = Field(description="the receiver's last HTTP status (0: none)")
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="the HMAC-SHA256 key of the signatures; shown once")


_COLUMNS = (
    "id, grant_id, url, window_start, status, stop_reason, delivered, attempts, last_status,"
    " created_at"
)


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(**dict(zip(Webhook.model_fields, row, strict=True)))


async def target_problem(url: str, private_ok: bool) -> Text | None:
    """Why the platform will not POST to ``url`` (None if it will): https to a host whose every
    address is public, unless private targets are allowed (development and tests)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return Text("webhook.url.malformed")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Text("webhook.url.http")
    if parts.username or parts.password:
        return Text("webhook.url.credentials")
    if private_ok:
        return None
    if parts.scheme != "https":
        return Text("webhook.url.https")
    try:
        found = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM),
            5,
        )
    except (OSError, TimeoutError, UnicodeError):
        return Text("webhook.url.unresolved")
    if not found or not all(ipaddress.ip_address(f[4][0]).is_global for f in found):
        return Text("webhook.url.private")
    return None


async def stop_for_grant(conn: AsyncConnection[Any], grant_id: int, reason: str) -> None:
    """Stop the grant's webhooks and drop what they had pending (uncommitted: it commits with
    the grant change)."""
    await conn.execute(
        "UPDATE partner_webhook SET status = 'stopped', stop_reason = %s, pending = NULL"
        " WHERE grant_id = %s AND status = 'active'",
        (reason, grant_id),
    )


async def stop(conn: AsyncConnection[Any], webhook_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE partner_webhook SET status = 'stopped', stop_reason = %s, pending = NULL,"
        " lease_until = NULL WHERE id = %s",
        (reason, webhook_id),
    )


# -- routes ----------------------------------------------------------------------------------


def routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: webhooks"]

    @r.post(
        "/grants/{grant_id}/webhooks",
        response_model=WebhookCreated,
        status_code=201,
        tags=tags,
        name="webhook.register",
    )
    async def register(
        conn: Conn, caller: Who, note: Noted, grant_id: Id, body: WebhookIn
    ) -> WebhookCreated:
        """Have the grant's indicators POSTed, signed, whenever they change (the partner
        enterprise's clients, for an active grant on an indicator dataset)."""
        g = await _party(conn, caller, note, grant_id)
        if g.partner_id != caller.enterprise_id:
            raise ApiError(403, "role_forbidden", Text("webhook.register"))
        cur = await conn.execute("SELECT kind FROM partner_dataset WHERE id = %s", (g.dataset_id,))
        if (await cur.fetchone() or ("",))[0] != "indicators":
            raise ApiError(422, "invalid_request", Text("webhook.indicators"))
        since = utc(body.window_start)
        problem = await target_problem(body.url, ctx.settings.webhook_private_targets)
        if problem:
            raise ApiError(422, "invalid_request", problem)
        reason = None
        if g.status != "active":
            reason = grants.inactive_reason(g.status)
        elif since and g.window_start and since < g.window_start:
            reason = "out_of_scope"
        if reason is not None:
            raise ApiError(403, reason, Text("webhook.grant", reason=reason))
        secret = f"whsec_{secrets.token_urlsafe(32)}"
        cur = await conn.execute(
            "INSERT INTO partner_webhook (grant_id, client_id, url, secret, window_start)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (g.id, caller.client_id, body.url, secret, since),
        )
        made = _webhook(await cur.fetchone() or ())
        await record(conn, ctx, note, 201)
        ctx.wake_webhooks.set()
        return WebhookCreated(**made.model_dump(), secret=secret)

    @r.get(
        "/grants/{grant_id}/webhooks",
        response_model=list[Webhook],
        tags=tags,
        name="webhook.list",
    )
    async def listing(conn: Conn, caller: Who, note: Noted, grant_id: Id) -> list[Webhook]:
        """The grant's webhooks (both parties), without their secrets."""
        await _party(conn, caller, note, grant_id)
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM partner_webhook WHERE grant_id = %s ORDER BY id",
            (grant_id,),
        )
        found = [_webhook(row) for row in await cur.fetchall()]
        note.rows = len(found)
        return found

    @r.delete("/webhooks/{webhook_id}", response_model=Webhook, tags=tags, name="webhook.delete")
    async def remove(conn: Conn, caller: Who, note: Noted, webhook_id: Id) -> Webhook:
        """Stop a webhook (the partner enterprise's clients)."""
        cur = await conn.execute(
            "SELECT grant_id FROM partner_webhook WHERE id = %s", (webhook_id,)
        )
        row = await cur.fetchone()
        g = await _party(conn, caller, note, row[0] if row else 0)
        if g.partner_id != caller.enterprise_id:
            raise ApiError(403, "role_forbidden", Text("webhook.remove"))
        await stop(conn, webhook_id, "deleted")
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM partner_webhook WHERE id = %s", (webhook_id,)
        )
        stopped = _webhook(await cur.fetchone() or ())
        await record(conn, ctx, note, 200)
        return stopped


async def _party(
    conn: AsyncConnection[Any], caller: Caller, note: Note, grant_id: int
) -> grants.Grant:
    """The grant if the caller's enterprise is a party to it (404 otherwise)."""
    if caller.enterprise_id is None:
        raise ApiError(403, "role_forbidden", Text("webhook.parties"))
    g = await grants.get(conn, grant_id, caller.enterprise_id) if grant_id else None
    if g is None:
        raise ApiError(404, "not_found", Text("webhook.missing"))
    note.supplier_id, note.partner_id = g.supplier_id, g.partner_id
    note.dataset_id, note.grant_id = g.dataset_id, g.id
    return g
