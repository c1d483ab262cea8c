"""People's passwords, hashed with Argon2id (argon2-cffi; the hash names its parameters)."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from plantwire_platform.translation import Text

MIN_LENGTH = 12
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))
"""Checked against for an unknown person, so that it costs as long as a wrong password."""


def new_password() -> str:
    """A random password to hand out once (the person may change it)."""
    return secrets.token_urlsafe(18)


def password_problem(password: str) -> Text | None:
    """Why ``password`` may not be used, if it may not."""
    if len(password) < MIN_LENGTH:
        return Text("password.short", least=MIN_LENGTH)
    if len(password) > 1024:
        return Text("password.long", most=1024)
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (an unknown person, ``None``,
    costs one verification too)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hashed(password: str) -> str:
    """:func:`hash_password` off the event loop."""
    return await asyncio.to_thread(hash_password, password)


async def matches(password: str, stored: str | None) -> bool:
    """:func:`password_matches` off the event loop."""
    return await asyncio.to_thread(password_matches, password, stored)
