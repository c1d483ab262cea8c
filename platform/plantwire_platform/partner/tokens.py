"""Partner identities: API clients with roles, scrypt-hashed secrets, short-lived signed tokens."""

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

Role = Literal["platform_admin", "enterprise_admin", "partner"]
ROLES: tuple[Role, ...] = ("platform_admin", "enterprise_admin", "partner")
ALGORITHM = "HS256"
AUDIENCE = "plantwire-partner"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a valid token speaks for."""

    client_id: str
    enterprise_id: int | None
    role: Role


class TokenError(Exception):
    """A token or credential that is missing, malformed, expired or wrong."""


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
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _decode(token: str, key: str) -> tuple[Caller, float]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "role", "exp", "iat", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {type(exc).__name__}") from None
    role, ent = claims.get("role"), claims.get("ent")
    if role not in ROLES or not (ent is None or isinstance(ent, int)):
        raise TokenError("invalid token: claims")
    return Caller(str(claims["sub"]), ent, role), float(claims["exp"])


class TokenVerifier:
    """Checks tokens (signature, audience, expiry, claims) and remembers those it accepted
    until they expire, so a client's signature is checked once per token rather than once per
    call. A token carries no data rights (those are read from the database on every call), so
    remembering it changes nothing but the cost. At most ``size`` tokens are kept."""

    def __init__(
        self, key: str, size: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self.key, self.size, self._clock = key, size, clock
        self._accepted: dict[str, tuple[Caller, float]] = {}

    def verify(self, token: str) -> Caller:
        now = self._clock()
        hit = self._accepted.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self._accepted[token]
        caller, expires = _decode(token, self.key)
        if now >= expires:
            raise TokenError("token expired")
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


async def rotate_secret(conn: AsyncConnection[Any], client_id: str, grace_s: int) -> str:
    """Add a new secret; the client's older secrets stay valid ``grace_s`` seconds more, so
    deployments can switch over without downtime."""
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
        "SELECT c.enterprise_id, c.role, s.hash FROM partner_client c"
        " JOIN partner_secret s ON s.client_id = c.id"
        " WHERE c.id = %s AND c.disabled_at IS NULL"
        " AND (s.expires_at IS NULL OR s.expires_at > now())"
        " ORDER BY s.id DESC",
        (client_id,),
    )
    rows = await cur.fetchall()
    # scrypt off the event loop; an unknown client costs one hash too (no timing oracle)
    for enterprise_id, role, stored in rows or [(None, None, _DUMMY_HASH)]:
        if await asyncio.to_thread(secret_matches, secret, stored) and role is not None:
            return Caller(client_id, enterprise_id, role)
    return None
