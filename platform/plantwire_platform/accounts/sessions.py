"""Console sessions: a refresh token that gets a signed-in person new short access tokens while
the console is in use, without making the access tokens live longer.

The token is random (256 bits), handed to the browser in an httpOnly cookie (scripts never see
it) and stored only as its SHA-256 in ``account_session``. Every refresh rotates it: the token
used is marked, a new one of the same family (one sign-in) is issued with a fresh lifetime
(``PLANTWIRE_SESSION_TTL_S``), so a session lasts while it is used and ends that long after its
last refresh. A used token presented again after :data:`REUSE_GRACE_S` closes its whole family
(someone copied it); within that time it is refused alone (two tabs refreshing at once). The
family ends with sign-out and whenever the person's token epoch moves (password change,
disabled, tokens revoked): the epoch the family began with no longer matches.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection

from plantwire_platform.partner.tokens import Caller
from plantwire_platform.translation import Text

COOKIE: Final = "plantwire_session"
"""The cookie that carries the refresh token (httpOnly, SameSite=Strict, path ``/auth``)."""
REUSE_GRACE_S: Final = 30
"""How long after its rotation a used token is refused without closing its family."""


@dataclass(frozen=True, slots=True)
class Refreshed:
    """A rotated session: who it speaks for and the family's new refresh token."""

    caller: Caller
    token: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a refresh token gets nothing; ``family`` is the family to close (None: none)."""

    text: Text
    family: uuid.UUID | None = None
    client_id: str = ""
    rotated: bool = False
    """The token was rotated moments ago (another tab's refresh): try the new cookie."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _issue(
    conn: AsyncConnection[Any], family: uuid.UUID, client_id: str, epoch: int, ttl_s: int
) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO account_session (family, client_id, token_hash, epoch, expires_at)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
        (family, client_id, _digest(token), epoch, ttl_s),
    )
    return token


async def open_session(conn: AsyncConnection[Any], caller: Caller, ttl_s: int) -> str:
    """A new family for ``caller`` (just signed in with its password); returns its first refresh
    token (uncommitted). The person's families that ended a day ago are cleared away."""
    await conn.execute(
        "DELETE FROM account_session"
        " WHERE client_id = %s AND expires_at < now() - interval '1 day'",
        (caller.client_id,),
    )
    return await _issue(conn, uuid.uuid4(), caller.client_id, caller.epoch, ttl_s)


async def refresh(conn: AsyncConnection[Any], token: str, ttl_s: int) -> Refreshed | Refusal:
    """Rotate ``token``: the caller it speaks for (read now: role, enterprise, epoch) and the
    family's next token, or why not (uncommitted; a refusal may name the family to close)."""
    cur = await conn.execute(
        "SELECT s.id, s.family, s.client_id, s.epoch, s.expires_at <= now(), s.used_at IS NOT NULL,"
        " s.used_at > now() - make_interval(secs => %s), c.enterprise_id, c.role,"
        " c.token_epoch, c.disabled_at IS NULL"
        " FROM account_session s JOIN partner_client c ON c.id = s.client_id"
        " WHERE s.token_hash = %s FOR UPDATE OF s",
        (REUSE_GRACE_S, _digest(token)),
    )
    row = await cur.fetchone()
    if row is None:
        return Refusal(Text("session.unknown"))
    sid, family, client_id, epoch, expired, used, just_used, ent, role, now_epoch, enabled = row
    if used:
        if just_used:
            return Refusal(Text("session.rotated"), None, client_id, rotated=True)
        return Refusal(Text("session.reused"), family, client_id)
    if expired:
        return Refusal(Text("session.expired"), None, client_id)
    if not enabled or now_epoch != epoch:
        return Refusal(Text("session.revoked"), family, client_id)
    await conn.execute("UPDATE account_session SET used_at = now() WHERE id = %s", (sid,))
    fresh = await _issue(conn, family, client_id, epoch, ttl_s)
    return Refreshed(Caller(client_id, ent, role, epoch), fresh)


async def close_family(conn: AsyncConnection[Any], family: uuid.UUID) -> None:
    """End every token of a family (uncommitted)."""
    await conn.execute("DELETE FROM account_session WHERE family = %s", (family,))


async def sign_out(conn: AsyncConnection[Any], token: str) -> str | None:
    """End the family of ``token`` (uncommitted); whose it was (None: no such session)."""
    cur = await conn.execute(
        "DELETE FROM account_session WHERE family ="
        " (SELECT family FROM account_session WHERE token_hash = %s) RETURNING client_id",
        (_digest(token),),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None
