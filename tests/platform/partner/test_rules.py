"""Pure partner logic, table-driven: grant rules and expiry, the access decision, the rate limiter,
the backoff and the token throttle, secret hashing, the audit chain's links and signed heads,
cursors and whole hours, the settings' secret checks, the token verifier's memory, the indicator
cache and webhook signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from plantwire_platform.partner.audit_chain import GENESIS, AuditKey, anchor_signed
from plantwire_platform.partner.catalog import Dataset
from plantwire_platform.partner.data import (
    IndicatorCache,
    decode_cursor,
    encode_cursor,
    whole_hours,
)
from plantwire_platform.partner.grants import (
    Candidate,
    GrantRequest,
    decide,
    expiry_problem,
    request_refusal,
)
from plantwire_platform.partner.limits import Backoff, RateLimiter, TokenThrottle
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
            "enterprise_name": "Two Works",
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


def test_keyed_links_are_hmac_under_a_key_derived_from_the_secret() -> None:
    at = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    row = {"id": 1, "at": at, "reason": ""}
    content = b'{"at":"2026-01-01T08:00:00.000000+00:00","id":1,"reason":""}'
    secret = "Pq8Zr3Lw6Vx1Nc9Hb4Tm7Ks2Fj5Gd0Ya"
    mac_key = hmac.new(secret.encode(), b"plantwire audit links v1", hashlib.sha256).digest()
    expected = hmac.new(mac_key, GENESIS.encode() + b"\n" + content, hashlib.sha256).hexdigest()
    key = AuditKey(secret)
    assert key.link(GENESIS, row) == expected
    # the same instant in another zone links the same; any change of content or link differs
    assert key.link(GENESIS, {**row, "at": at.astimezone(tz=None)}) == expected
    assert key.link(GENESIS, {**row, "reason": "x"}) != expected
    assert key.link("1" * 64, row) != expected
    assert AuditKey(secret[:-1] + "b").link(GENESIS, row) != expected  # another key
    assert key.key_id == AuditKey(secret).key_id != AuditKey(secret[:-1] + "b").key_id
    # the head's MAC binds its id and hash; the empty chain's head has none
    mac = key.head_mac(7, "ab" * 32)
    assert key.head_matches(7, "ab" * 32, mac) and key.head_matches(0, GENESIS, "")
    assert not key.head_matches(6, "ab" * 32, mac) and not key.head_matches(7, "cd" * 32, mac)
    assert not key.head_matches(7, "ab" * 32, "")


def test_signed_heads_verify_with_the_public_key_only() -> None:
    key, other = AuditKey("Pq8Zr3Lw6Vx1Nc9Hb4Tm7Ks2Fj5Gd0Ya"), AuditKey("x" * 16 + "y" * 16)
    anchor = key.sign({"id": 41, "hash": "ab" * 32, "signed_at": "2026-12-01T10:00:00+00:00"})
    assert anchor["key_id"] == key.key_id and anchor["public_key"] == key.public_key
    assert anchor_signed(anchor, key.public_key)
    assert not anchor_signed(anchor, other.public_key)
    for forged in ({"id": 40}, {"hash": "cd" * 32}, {"signed_at": "2027-01-01T00:00:00+00:00"}):
        assert not anchor_signed({**anchor, **forged}, key.public_key)
    assert not anchor_signed({"id": 1}, key.public_key)  # no signature at all


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("10:00", "12:00", ("10:00", "12:00")),
        ("10:10", "10:11", ("11:00", "10:00")),  # empty: start after end
        ("10:30", "12:00", ("11:00", "12:00")),
        ("10:00", "11:59", ("10:00", "11:00")),
        ("10:00+05:30", "12:00", ("05:00", "12:00")),  # 04:30 UTC
    ],
)
def test_whole_hours(start: str, end: str, expected: tuple[str, str]) -> None:
    def at(text: str) -> datetime:
        clock, _, zone = text.partition("+")
        ts = datetime.fromisoformat(f"2026-10-05T{clock}:00")
        if zone:
            return ts.replace(tzinfo=datetime.fromisoformat(f"2026-10-05T00:00+{zone}").tzinfo)
        return ts.replace(tzinfo=UTC)

    assert whole_hours(at(start), at(end)) == (at(expected[0]), at(expected[1]))
    late = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    assert whole_hours(late, late) == (late.replace(minute=0), late.replace(minute=0))


@pytest.mark.parametrize(
    ("days_ahead", "problem"),
    [
        (-1, "expires_at must lie in the future"),
        (0, "expires_at must lie in the future"),
        (1, ""),
        (365, ""),
        (366, "expires_at may lie at most 365 days ahead"),
    ],
)
def test_grant_expiry_lies_ahead_within_the_cap(days_ahead: int, problem: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    found = expiry_problem(now + timedelta(days=days_ahead), now, 365)
    assert (str(found) if found else "") == problem


def test_backoff_doubles_with_every_failure_after_the_free_ones() -> None:
    now = [0.0]
    backoff = Backoff(free=2, base_s=1.0, max_s=8.0, clock=lambda: now[0])
    assert [backoff.failed("a") for _ in range(6)] == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff.wait("a") == 8.0 and backoff.wait("b") == 0.0
    now[0] = 5.0
    assert backoff.wait("a") == 3.0
    now[0] = 13.0  # a quiet max_s since the last failure: forgotten
    assert backoff.wait("a") == 0.0 and backoff.failed("a") == 0.0
    backoff.failed("a")
    backoff.failed("a")
    backoff.succeeded("a")
    assert backoff.failed("a") == 0.0


def test_token_throttle_holds_back_ids_and_addresses_separately() -> None:
    now = [0.0]
    throttle = TokenThrottle(
        rate=100, burst=100, ip_rate=100, ip_burst=100, id_rate=100, id_burst=100,
        free_failures=1, backoff_max_s=60, clock=lambda: now[0],
    )  # fmt: skip
    assert throttle.admit("1.1.1.1", "a") == 0.0
    throttle.failed("1.1.1.1", "a")
    throttle.failed("2.2.2.2", "a")  # "a" now held back 1 s, from any address
    assert throttle.admit("3.3.3.3", "a") == 2.0  # and knocking again doubles it
    assert throttle.admit("3.3.3.3", "b") == 0.0  # the address itself is not held back
    throttle.succeeded("a")
    assert throttle.admit("4.4.4.4", "a") == 0.0
    # the global bucket: beyond its burst, everyone waits
    tight = TokenThrottle(1, 2, 100, 100, 100, 100, 3, 60, clock=lambda: now[0])
    assert [tight.admit(f"10.0.0.{i}", f"c{i}") for i in range(3)] == [0.0, 0.0, 1.0]


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
        ({"audit_key": "aZ4#kq9!Lm2@xR7$wT5%vB8^nC3&hJ6*"}, True),
        ({"audit_key": "default-audit-key-for-the-platform"}, False),
        ({"audit_key": "short"}, False),
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
    assert verifier.verify(tokens[2]) == Caller("c2", 2, "partner", 0)
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
    found = await target_problem(url, private_ok)
    assert (str(found) if found else "") == problem
