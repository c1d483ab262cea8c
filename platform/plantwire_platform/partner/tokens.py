"""API clients and their tokens: roles, scrypt-hashed secrets, short-lived signed tokens, and the
verification of a token on every call (signature, expiry, and the client's status in the
database: a disabled or deleted client, or one whose tokens were revoked, is refused at its next
call).

Nothing here is specific to partners but the role names: any API can verify its callers with
:class:`TokenVerifier`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from psycopg import AsyncConnection
from pydantic import BaseModel

from plantwire_platform.batching import Batcher, Unavailable
from plantwire_platform.translation import Text

Role = Literal[
    "platform_admin",
    "enterprise_admin",
    "enterprise_viewer",
    "chain_analyst",
    "park_authority",
    "region_authority",
    "partner",
]
ROLES: tuple[Role, ...] = (
    "platform_admin",
    "enterprise_admin",
    "enterprise_viewer",
    "chain_analyst",
    "park_authority",
    "region_authority",
    "partner",
)
ClientRole = Literal["platform_admin", "enterprise_admin", "partner"]
"""The roles an API client of the partner interface is registered with (people hold the others:
:mod:`plantwire_platform.accounts`)."""
PARTNER_ROLES: frozenset[Role] = frozenset(
    {"platform_admin", "enterprise_admin", "chain_analyst", "partner"}
)
"""Roles the partner interface serves: a chain analyst reads what suppliers granted its
enterprise, as its partner clients do."""
ALGORITHM = "HS256"
AUDIENCE = "plantwire-partner"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a valid token speaks for; ``epoch`` is the client's token epoch when the token was
    issued (raised when the client is disabled or its tokens are revoked)."""

    client_id: str
    enterprise_id: int | None
    role: Role
    epoch: int = 0


class TokenError(Exception):
    """A token or credential that is missing, malformed, expired or wrong; ``text`` says which
    in the caller's language."""

    def __init__(self, text: Text) -> None:
        super().__init__(str(text))
        self.text = text


def hash_secret(secret: str) -> str:
    """A salted scrypt hash of a client secret, self-describing its parameters."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.urlsafe_b64encode
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=b64(salt).decode(), digest=b64(digest).decode()
    )


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    b64 = base64.urlsafe_b64decode
    got = hashlib.scrypt(secret.encode(), salt=b64(salt), dklen=32, n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(got, b64(digest))


_DUMMY_HASH = (
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def issue_token(caller: Caller, key: str, ttl_s: int, now: datetime | None = None) -> str:
    """A signed access token for ``caller`` that expires after ``ttl_s`` seconds."""
    now = now or datetime.now(UTC)
    claims = {
        "sub": caller.client_id,
        "ent": caller.enterprise_id,
        "role": caller.role,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_s),
        "jti": uuid.uuid4().hex,
        "gen": caller.epoch,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _decode(token: str, key: str) -> tuple[Caller, float]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "role", "exp", "iat", "aud", "gen"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError(Text("token.expired")) from None
    except jwt.PyJWTError as exc:
        raise TokenError(Text("token.invalid", why=type(exc).__name__)) from None
    role, ent, gen = claims.get("role"), claims.get("ent"), claims.get("gen")
    if role not in ROLES or not (ent is None or isinstance(ent, int)) or not isinstance(gen, int):
        raise TokenError(Text("token.invalid", why="claims"))
    return Caller(str(claims["sub"]), ent, role, gen), float(claims["exp"])


class ClientCheck(Batcher[Caller, bool]):
    """Whether callers' clients still exist, are enabled, hold the role and enterprise their
    tokens say, and have not had their tokens revoked since: the callers of concurrent requests
    are checked together in one statement (started after they arrived, so a change committed
    before a call is seen by it)."""

    name = "client check"
    isolate = True
    unavailable = Unavailable
    max_batch = 500

    async def process(self, conn: AsyncConnection[Any], items: list[Caller]) -> list[bool]:
        cur = await conn.execute(
            "SELECT r.n FROM unnest(%(n)s::integer[], %(id)s::text[], %(ent)s::bigint[],"
            " %(role)s::text[], %(gen)s::bigint[]) AS r(n, id, ent, role, gen)"
            " JOIN partner_client c ON c.id = r.id AND c.disabled_at IS NULL"
            " AND c.token_epoch = r.gen AND c.role = r.role"
            " AND c.enterprise_id IS NOT DISTINCT FROM r.ent",
            {
                "n": list(range(len(items))),
                "id": [c.client_id for c in items],
                "ent": [c.enterprise_id for c in items],
                "role": [c.role for c in items],
                "gen": [c.epoch for c in items],
            },
        )
        valid = {row[0] for row in await cur.fetchall()}
        return [n in valid for n in range(len(items))]


class TokenVerifier:
    """Checks tokens: the signature, audience, expiry and claims (remembered for accepted tokens
    until they expire, so a signature is checked once per token rather than once per call), then
    on every call the client's status in the database (:class:`ClientCheck`, run by the API
    beside its routes). A token carries no data rights: those are read from the database on
    every call too. At most ``size`` tokens are remembered."""

    def __init__(
        self, key: str, size: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.key, self.size, self._clock = key, size, clock
        self._accepted: dict[str, tuple[Caller, float]] = {}
        self.clients = ClientCheck()

    async def caller(self, token: str) -> Caller:
        """The caller ``token`` speaks for, if it is valid and its client is in good standing
        (:class:`TokenError` if not; :class:`~plantwire_platform.batching.Unavailable` if the
        status cannot be read)."""
        caller = self.verify(token)
        if not await self.clients.submit(caller):
            raise TokenError(Text("token.revoked"))
        return caller

    def verify(self, token: str) -> Caller:
        """The caller of a token with a valid signature, unexpired (no database check)."""
        now = self._clock()
        hit = self._accepted.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self._accepted[token]
        caller, expires = _decode(token, self.key)
        if now >= expires:
            raise TokenError(Text("token.expired"))
        if len(self._accepted) >= self.size:
            self._accepted = {t: v for t, v in self._accepted.items() if now < v[1]}
            while len(self._accepted) >= self.size:
                del self._accepted[next(iter(self._accepted))]
        self._accepted[token] = (caller, expires)
        return caller


async def create_client(
    conn: AsyncConnection[Any],
    client_id: str,
    role: Role,
    enterprise_id: int | None,
    name: str = "",
) -> str:
    """Register a client; returns its first secret (shown once, stored hashed)."""
    secret = new_secret()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO partner_client (id, enterprise_id, role, name) VALUES (%s, %s, %s, %s)",
            (client_id, enterprise_id, role, name),
        )
        await conn.execute(
            "INSERT INTO partner_secret (client_id, hash) VALUES (%s, %s)",
            (client_id, hash_secret(secret)),
        )
    return secret


class Client(BaseModel):
    """An API client as its administrators see it (never its secrets)."""

    client_id: str
    enterprise_id: int | None
    role: Role
    name: str
    disabled: bool
    created_at: datetime


async def get_client(conn: AsyncConnection[Any], client_id: str) -> Client | None:
    cur = await conn.execute(
        "SELECT id, enterprise_id, role, name, disabled_at IS NOT NULL, created_at"
        " FROM partner_client WHERE id = %s",
        (client_id,),
    )
    row = await cur.fetchone()
    return Client(**dict(zip(Client.model_fields, row, strict=True))) if row else None


async def set_disabled(conn: AsyncConnection[Any], client_id: str, disabled: bool) -> None:
    """Disable (its tokens stop at their next call, no new ones are issued) or enable a
    client (uncommitted). Tokens issued before it was disabled stay invalid once enabled."""
    await conn.execute(
        "UPDATE partner_client SET"
        " disabled_at = CASE WHEN %(off)s THEN coalesce(disabled_at, now()) END,"
        " token_epoch = token_epoch + CASE WHEN %(off)s THEN 1 ELSE 0 END WHERE id = %(id)s",
        {"off": disabled, "id": client_id},
    )


async def revoke_tokens(conn: AsyncConnection[Any], client_id: str) -> None:
    """Invalidate every token the client holds (uncommitted); its secrets still get new ones."""
    await conn.execute(
        "UPDATE partner_client SET token_epoch = token_epoch + 1 WHERE id = %s", (client_id,)
    )


async def rotate_secret(conn: AsyncConnection[Any], client_id: str, grace_s: int) -> str:
    """Add a new secret; the client's older secrets stay valid ``grace_s`` seconds more, so
    deployments can switch over without downtime. (Inside an open transaction, this commits
    with it.)"""
    secret = new_secret()
    async with conn.transaction():
        await conn.execute(
            "UPDATE partner_secret SET expires_at = now() + make_interval(secs => %s)"
            " WHERE client_id = %s AND (expires_at IS NULL"
            " OR expires_at > now() + make_interval(secs => %s))",
            (grace_s, client_id, grace_s),
        )
        await conn.execute(
            "INSERT INTO partner_secret (client_id, hash) VALUES (%s, %s)",
            (client_id, hash_secret(secret)),
        )
    return secret


async def authenticate(conn: AsyncConnection[Any], client_id: str, secret: str) -> Caller | None:
    """The client if ``secret`` matches one of its unexpired secrets and it is enabled."""
    cur = await conn.execute(
        "SELECT c.enterprise_id, c.role, c.token_epoch, s.hash FROM partner_client c"
        " JOIN partner_secret s ON s.client_id = c.id"
        " WHERE c.id = %s AND c.disabled_at IS NULL"
        " AND (s.expires_at IS NULL OR s.expires_at > now())"
        " ORDER BY s.id DESC",
        (client_id,),
    )
    rows = await cur.fetchall()
    # scrypt off the event loop; an unknown client costs one hash too (no timing oracle)
    for enterprise_id, role, epoch, stored in rows or [(None, None, 0, _DUMMY_HASH)]:
        if await asyncio.to_thread(secret_matches, secret, stored) and role is not None:
            return Caller(client_id, enterprise_id, role, epoch)
    return None
