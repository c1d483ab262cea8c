"""The webhook dispatcher of an API process: checks the webhooks that are due, queues changed
indicators, and delivers pending payloads, signed, with retries and backoff (the protocol is
described in :mod:`plantwire_platform.partner.webhooks`). Work is claimed in the database
(``FOR UPDATE SKIP LOCKED`` and a lease), so several API processes share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from psycopg_pool import AsyncConnectionPool

from plantwire_platform.errors import ApiError
from plantwire_platform.partner.feed import snapshot
from plantwire_platform.partner.grants import effective_status, inactive_reason
from plantwire_platform.partner.tokens import Caller
from plantwire_platform.partner.webhooks import ACTION, sign, stop, target_problem

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context

log = logging.getLogger(__name__)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST and return the receiver's status (no redirects followed); raises OSError or
    http.client.HTTPException when there is no answer."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65_536)
        return response.status
    finally:
        conn.close()


_CLAIM_CHECKS = """
UPDATE partner_webhook w SET next_check_at = now() + make_interval(secs => %(every)s)
FROM partner_grant g, partner_client c
WHERE w.id IN (SELECT id FROM partner_webhook WHERE status = 'active' AND next_check_at <= now()
               ORDER BY next_check_at LIMIT 100 FOR UPDATE SKIP LOCKED)
  AND g.id = w.grant_id AND c.id = w.client_id
RETURNING w.id, w.grant_id, g.dataset_id, g.purpose, w.client_id, c.enterprise_id, c.role,
          c.disabled_at IS NULL, w.window_start, w.checked_values
"""

_QUEUE = """
UPDATE partner_webhook SET checked_values = %(values)s, event_seq = event_seq + 1,
       pending = %(body)s,
       attempts = CASE WHEN pending IS NULL THEN 0 ELSE attempts END,
       next_attempt_at = CASE WHEN pending IS NULL THEN now() ELSE next_attempt_at END
WHERE id = %(id)s AND status = 'active'
"""

_CLAIM_DELIVERY = f"""
UPDATE partner_webhook w SET lease_until = now() + make_interval(secs => %(lease)s)
FROM partner_grant g, partner_client c
WHERE w.id IN (SELECT id FROM partner_webhook WHERE status = 'active' AND pending IS NOT NULL
               AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
               ORDER BY next_attempt_at LIMIT %(most)s FOR UPDATE SKIP LOCKED)
  AND g.id = w.grant_id AND c.id = w.client_id
RETURNING w.id, w.url, w.secret, w.pending, w.event_seq, w.attempts,
          CASE WHEN c.disabled_at IS NOT NULL THEN 'client_disabled'
               ELSE {effective_status("g")} END,
          g.supplier_id, g.partner_id, g.dataset_id, g.id, w.client_id, c.role
"""

_DELIVERED = """
UPDATE partner_webhook SET lease_until = NULL, last_status = %(status)s, attempts = 0,
       delivered = delivered + 1,
       pending = CASE WHEN event_seq = %(seq)s THEN NULL ELSE pending END,
       next_attempt_at = CASE WHEN event_seq = %(seq)s THEN NULL ELSE now() END
WHERE id = %(id)s
"""

_FAILED = """
UPDATE partner_webhook SET lease_until = NULL, last_status = %(status)s,
       attempts = attempts + 1,
       next_attempt_at = now() + make_interval(secs => %(delay)s),
       status = CASE WHEN attempts + 1 >= %(max)s THEN 'stopped' ELSE status END,
       stop_reason = CASE WHEN attempts + 1 >= %(max)s THEN 'failing' ELSE stop_reason END,
       pending = CASE WHEN attempts + 1 >= %(max)s THEN NULL ELSE pending END
WHERE id = %(id)s
"""


async def dispatch(ctx: Context, pool: AsyncConnectionPool) -> None:
    """Check due webhooks and deliver pending payloads until cancelled."""
    s = ctx.settings
    pause = min(s.webhook_interval_s, s.webhook_retry_s)
    while True:
        try:
            await check(ctx, pool)
            await deliver(ctx, pool)
        except Exception:  # the dispatcher outlives a failed round
            log.exception("webhook round failed")
        try:  # asyncio.timeout, not wait_for: a cancellation at the timeout must not be lost
            async with asyncio.timeout(pause):
                await ctx.wake_webhooks.wait()
        except TimeoutError:
            pass
        ctx.wake_webhooks.clear()


async def check(ctx: Context, pool: AsyncConnectionPool) -> None:
    """Snapshot the due webhooks' indicators; queue those that changed."""
    async with pool.connection() as conn:
        cur = await conn.execute(_CLAIM_CHECKS, {"every": ctx.settings.webhook_interval_s})
        due = await cur.fetchall()
    for wid, grant_id, dataset, purpose, client, ent, role, enabled, since, last in due:
        if not enabled:
            async with pool.connection() as conn:
                await stop(conn, wid, "client_disabled")
            continue
        caller = Caller(client, ent, role)
        try:
            snap = await snapshot(
                ctx, caller, dataset, purpose, since, action=ACTION, grant_id=grant_id
            )
        except ApiError as exc:
            if exc.status >= 500:
                continue  # try again at the next check
            async with pool.connection() as conn:  # the denial is audited already
                await stop(conn, wid, exc.code)
            continue
        values = json.dumps(snap["indicators"], sort_keys=True)
        if values == last:
            continue
        body = json.dumps({"webhook_id": wid, **snap}, default=str)
        async with pool.connection() as conn:
            await conn.execute(_QUEUE, {"values": values, "body": body, "id": wid})


async def deliver(ctx: Context, pool: AsyncConnectionPool, most: int = 50) -> None:
    """Deliver up to ``most`` pending payloads that are due, concurrently (claimed together in
    one statement, each under a lease)."""
    lease = ctx.settings.webhook_timeout_s + 30
    async with pool.connection() as conn:
        cur = await conn.execute(_CLAIM_DELIVERY, {"lease": lease, "most": most})
        rows = await cur.fetchall()
    await asyncio.gather(*(_attempt(ctx, pool, row) for row in rows))


async def _attempt(ctx: Context, pool: AsyncConnectionPool, row: tuple[Any, ...]) -> None:
    s = ctx.settings
    wid, url, secret, pending, seq, attempts, grant_status = row[:7]
    supplier, partner, dataset, grant_id, client, role = row[7:]
    caller = Caller(client, partner, role)
    entry = {
        "supplier_id": supplier,
        "partner_id": partner,
        "dataset_id": dataset,
        "grant_id": grant_id,
        "action": ACTION,
    }
    if grant_status != "active":  # or its client was disabled since it was queued
        reason = (
            grant_status if grant_status == "client_disabled" else inactive_reason(grant_status)
        )
        with contextlib.suppress(ApiError):
            await ctx.audited(caller, **entry, outcome="denied", reason=reason, status=403)
        async with pool.connection() as conn:
            await stop(conn, wid, reason)
        return
    body = pending.encode()
    try:
        await ctx.audited(
            caller,
            **entry,
            outcome="allowed",
            status=0,
            rows=len(json.loads(pending).get("indicators", [])),
        )
    except ApiError:  # not audited, so not sent: release it for a later round
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE partner_webhook SET lease_until = NULL WHERE id = %s", (wid,)
            )
        return
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "plantwire-webhooks",
        "Plantwire-Timestamp": str(stamp),
        "Plantwire-Signature": sign(secret, stamp, body),
        "Plantwire-Event-Id": f"{wid}.{seq}",
        "Plantwire-Webhook-Id": str(wid),
    }
    status = 0
    if problem := await target_problem(url, s.webhook_private_targets):
        log.warning("webhook %s not sent: %s", wid, problem)
    else:
        try:
            status = await asyncio.to_thread(_post, url, body, headers, s.webhook_timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            log.info("webhook %s delivery failed: %s", wid, exc)
    async with pool.connection() as conn:
        if 200 <= status < 300:
            await conn.execute(_DELIVERED, {"status": status, "seq": seq, "id": wid})
        else:
            delay = min(s.webhook_retry_s * 2**attempts, 3600.0)
            await conn.execute(
                _FAILED,
                {"status": status, "delay": delay, "max": s.webhook_max_attempts, "id": wid},
            )
