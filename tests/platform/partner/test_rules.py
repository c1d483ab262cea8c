"""Pure partner logic, table-driven: grant rules, the access decision, the rate limiter, secret
hashing, the audit chain hash, cursors, the settings' secret checks, the token verifier's memory,
the indicator cache and webhook signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from plantwire_platform.partner.audit import GENESIS, chain_hash
from plantwire_platform.partner.catalog import Dataset
from plantwire_platform.partner.data import IndicatorCache, decode_cursor, encode_cursor
from plantwire_platform.partner.grants import Candidate, GrantRequest, decide, request_refusal
from plantwire_platform.partner.limits import RateLimiter
from plantwire_platform.partner.tokens import (
    Caller,
    TokenError,
    TokenVerifier,
    hash_secret,
    issue_token,
    secret_matches,
)
from plantwire_platform.partner.webhooks import sign, target_problem
from plantwire_platform.settings import PlatformSettings

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


def dataset(kind: str = "counts", grade: str = "general", granularity: str = "raw") -> Dataset:
    return Dataset.model_validate(
        {
            "id": 1,
            "enterprise_id": 2,
            "code": "d",
            "title": "D",
            "kind": kind,
            "domain": "x",
            "grade": grade,
            "granularity": granularity,
            "purposes": ["planning"],
        }
    )


@pytest.mark.parametrize(
    ("d", "request_", "expected"),
    [
        (dataset(grade="core", granularity="aggregated"), {}, "grade_forbidden"),
        (
            dataset(grade="important", granularity="aggregated"),
            {"granularity": "raw"},
            "grade_forbidden",
        ),
        (dataset(granularity="aggregated"), {"granularity": "raw"}, "out_of_scope"),
        (dataset(), {"granularity": "raw"}, None),
        (dataset(), {"purpose": "resale"}, "wrong_purpose"),
        (dataset("indicators", "important", "aggregated"), {"fields": ["x"]}, "out_of_scope"),
        (dataset(), {"window_start": EXPIRES, "window_end": EXPIRES}, "out_of_scope"),
        (dataset(grade="important", granularity="aggregated"), {"site_ids": [3]}, None),
    ],
)
def test_request_rules(d: Dataset, request_: dict[str, object], expected: str | None) -> None:
    r = GrantRequest.model_validate(
        {"dataset_id": 1, "purpose": "planning", "expires_at": EXPIRES, **request_}
    )
    assert request_refusal(d, r)[0] == expected


def c(gid: int, purpose: str, status: str, expired: bool = False) -> Candidate:
    return Candidate(gid, purpose, status, expired)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], (None, "no_grant")),
        ([c(1, "quality", "active")], (None, "wrong_purpose")),
        ([c(1, "planning", "active")], (1, None)),
        ([c(2, "planning", "revoked"), c(1, "planning", "active")], (1, None)),
        ([c(2, "planning", "revoked"), c(1, "planning", "terminated")], (None, "revoked")),
        ([c(1, "planning", "active", expired=True)], (None, "expired")),
        ([c(1, "planning", "approved", expired=True)], (None, "expired")),
        ([c(1, "planning", "approved")], (None, "no_grant")),
        ([c(1, "planning", "requested")], (None, "no_grant")),
        ([c(1, "planning", "rejected")], (None, "no_grant")),
        ([c(3, "planning", "terminated"), c(2, "planning", "revoked")], (None, "no_grant")),
    ],
)
def test_access_decision(candidates: list[Candidate], expected: tuple[object, object]) -> None:
    assert decide(candidates, "planning") == expected


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert limiter.take("b") == 0.0  # per client
    now[0] = 0.5  # one token back
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.5
    assert [RateLimiter.retry_after(w) for w in (0.01, 1.0, 1.2)] == ["1", "1", "2"]


def test_rate_limiter_forgets_refilled_buckets_only() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0], max_keys=2)
    limiter.take("a")
    now[0] = 5.0  # "a" has refilled
    limiter.take("b")
    limiter.take("b")
    limiter.take("c")  # a third key: "a" is forgotten, "b" (still drained) is kept
    assert limiter.take("b") > 0
    assert limiter.take("a") == 0.0


def test_secret_hash() -> None:
    stored = hash_secret("s3cret-value")
    assert stored.startswith("scrypt$16384$8$1$") and "s3cret-value" not in stored
    assert secret_matches("s3cret-value", stored)
    assert not secret_matches("s3cret-valuE", stored)
    assert stored != hash_secret("s3cret-value")  # salted
    assert not secret_matches("x", "md5$abc")


def test_chain_hash_covers_previous_hash_and_content() -> None:
    at = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    row = {"id": 1, "at": at, "reason": ""}
    content = json.dumps(
        {"at": "2026-01-01T08:00:00.000000+00:00", "id": 1, "reason": ""},
        sort_keys=True,
        separators=(",", ":"),
    )
    expected = hashlib.sha256(f"{GENESIS}\n{content}".encode()).hexdigest()
    assert chain_hash(GENESIS, row) == expected
    # the same instant in another zone hashes the same; any change of content or link differs
    assert chain_hash(GENESIS, {**row, "at": at.astimezone(tz=None)}) == expected
    assert chain_hash(GENESIS, {**row, "reason": "x"}) != expected
    assert chain_hash("1" * 64, row) != expected


def test_cursor_round_trip_and_garbage() -> None:
    ts = datetime(2026, 10, 5, 10, 0, tzinfo=UTC) + timedelta(microseconds=5)
    assert decode_cursor(encode_cursor(ts, 42)) == (ts, 42)
    for garbage in ("!!", "eA==", "MjAyNnwx"):
        with pytest.raises(ValueError, match="malformed cursor"):
            decode_cursor(garbage)


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({}, True),
        ({"token_secret": "aZ4#kq9!Lm2@xR7$wT5%vB8^nC3&hJ6*"}, True),
        ({"token_secret": "changeme"}, False),
        ({"token_secret": "please-change-this-secret-value-now!"}, False),
        ({"token_secret": "a" * 40}, False),
        ({"token_secret": "changeme", "insecure_dev_secrets": True}, True),
        ({"token_ttl_s": 300}, True),
        ({"token_ttl_s": 301}, False),
    ],
)
def test_settings_refuse_placeholder_secrets(fields: dict[str, object], ok: bool) -> None:
    if ok:
        PlatformSettings.model_validate(fields)
    else:
        with pytest.raises(ValidationError):
            PlatformSettings.model_validate(fields)


KEY = "k7Qx2mVb9TzR4wLp8Yc3Nf6Hd1Js5Ga0Ue"


def test_token_verifier_remembers_until_expiry() -> None:
    now = [datetime.now(UTC).timestamp()]
    verifier = TokenVerifier(KEY, size=2, clock=lambda: now[0])
    issued = datetime.fromtimestamp(now[0], UTC)
    tokens = [issue_token(Caller(f"c{i}", i, "partner"), KEY, 60, issued) for i in range(3)]
    assert [verifier.verify(t).client_id for t in tokens] == ["c0", "c1", "c2"]  # c0 forgotten
    assert verifier.verify(tokens[2]) == Caller("c2", 2, "partner")
    with pytest.raises(TokenError):
        verifier.verify(tokens[2][:-2] + "xx")  # a forged signature is still checked
    now[0] += 61  # remembered tokens expire like the others
    with pytest.raises(TokenError, match="expired"):
        verifier.verify(tokens[2])


async def test_indicator_cache_keys_and_single_flight() -> None:
    cache = IndicatorCache(max_age_s=60)
    past = datetime(2026, 1, 1, tzinfo=UTC)
    calls: list[str] = []

    async def compute(tag: str) -> str:
        calls.append(tag)
        await asyncio.sleep(0.01)
        return tag

    # concurrent misses of one key compute once
    got = await asyncio.gather(*(cache.get(("k", 1), past, lambda: compute("a")) for _ in range(5)))
    assert got == ["a"] * 5 and calls == ["a"]
    assert await cache.get(("k", 1), past, lambda: compute("b")) == "a"  # hit
    assert await cache.get(("k", 2), past, lambda: compute("c")) == "c"  # new data version
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await cache.get(("k", 3), future, lambda: compute("d")) == "d"
    assert await cache.get(("k", 3), future, lambda: compute("e")) == "e"  # never kept
    assert calls == ["a", "c", "d", "e"]
    off = IndicatorCache(max_age_s=0)
    assert await off.get(("k", 1), past, lambda: compute("f")) == "f"
    assert await off.get(("k", 1), past, lambda: compute("g")) == "g"


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'{"indicators": []}'
    expected = hmac.new(b"whsec_x", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_x", 1_700_000_000, body) == f"v1={expected}"
    assert sign("whsec_x", 1_700_000_001, body) != sign("whsec_x", 1_700_000_000, body)


@pytest.mark.parametrize(
    ("url", "private_ok", "problem"),
    [
        ("https://127.0.0.1/hook", False, "the host has a non-public address"),
        ("https://10.1.2.3:8443/hook", False, "the host has a non-public address"),
        ("https://[::1]/hook", False, "the host has a non-public address"),
        ("http://8.8.8.8/hook", False, "https is required"),
        ("http://127.0.0.1:9/hook", True, ""),
        ("ftp://example.com/x", True, "an http(s) URL with a host is required"),
        ("https://u:p@example.com/x", True, "credentials in the URL are not accepted"),
        ("https://example.com:99999/x", True, "malformed URL"),
        ("https://8.8.8.8/hook", False, ""),
    ],
)
async def test_webhook_targets(url: str, private_ok: bool, problem: str) -> None:
    assert await target_problem(url, private_ok) == problem
