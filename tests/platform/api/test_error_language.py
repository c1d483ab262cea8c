"""The API's error details in the request's language, on a real PostgreSQL: ``Accept-Language``
zh* gets Chinese, en* and anything else English (what clients always got), the console's
``plantwire_lang`` cookie counts; the error codes never change. The expected words are written
out here, not read from the catalogue."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.platform.identities import enterprise, person, register, served, sign_in

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int, int]]:
    """The API in-process with two enterprises (their ids beside the client)."""
    acme = enterprise(database_url, "ACME", "91110000000000001X")
    bolt = enterprise(database_url, "BOLT", "91110000000000002X")
    async with served(database_url) as client:
        yield client, acme, bolt


async def answers(
    client: httpx.AsyncClient, method: str, path: str, **kwargs: object
) -> dict[str, tuple[int, str, object]]:
    """The same request in Chinese, in English and with no language: status, code, detail."""
    headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
    found = {}
    for name, language in (("zh", ZH), ("en", {"Accept-Language": "en-GB"}), ("none", {})):
        got = await client.request(method, path, headers={**headers, **language}, **kwargs)  # type: ignore[arg-type]
        found[name] = (got.status_code, got.json()["error"], got.json()["detail"])
    return found


async def test_refusals_are_worded_in_the_requests_language(
    api: tuple[httpx.AsyncClient, int, int], database_url: str
) -> None:
    client, acme, bolt = api
    viewer = await person(client, database_url, "vic", "enterprise_viewer", acme)
    admin = await person(client, database_url, "root", "platform_admin")

    no_token = await answers(client, "GET", f"/api/v1/enterprises/{acme}")
    assert no_token == {
        "zh": (401, "invalid_token", "需要 Bearer 令牌"),
        "en": (401, "invalid_token", "a Bearer token is required"),
        "none": (401, "invalid_token", "a Bearer token is required"),
    }
    forged = await answers(
        client, "GET", f"/api/v1/enterprises/{acme}", headers={"Authorization": "Bearer x.y.z"}
    )
    assert forged["zh"] == (401, "invalid_token", "令牌无效：DecodeError")
    assert forged["en"] == (401, "invalid_token", "invalid token: DecodeError")

    foreign = await answers(client, "GET", f"/api/v1/enterprises/{bolt}", headers=viewer)
    assert foreign["zh"] == (403, "not_bound", "这个企业不归你读取")
    assert (
        foreign["en"]
        == foreign["none"]
        == (403, "not_bound", "this enterprise is not yours to read")
    )

    missing = await answers(client, "GET", "/api/v1/enterprises/999999", headers=admin)
    assert missing["zh"] == (404, "not_found", "没有这个企业")
    assert missing["en"] == (404, "not_found", "no such enterprise")
    no_route = await answers(client, "GET", "/api/v1/no-such-route")
    assert no_route["zh"] == (404, "not_found", "没有这个路由")
    assert no_route["en"] == (404, "not_found", "no such route")

    taken = {"code": "ACME", "uscc": "91110000000000009X", "name": "Again"}
    conflict = await answers(client, "POST", "/api/v1/enterprises", headers=admin, json=taken)
    assert conflict["zh"] == (409, "conflict", "该代码已被占用")
    assert conflict["en"] == (409, "conflict", "code taken")


async def test_validation_errors_are_worded_in_the_requests_language(
    api: tuple[httpx.AsyncClient, int, int], database_url: str
) -> None:
    client, acme, _ = api
    password = await register(database_url, "vic", "enterprise_viewer", acme)
    viewer = await sign_in(client, "vic", password)
    path = f"/api/v1/enterprises/{acme}/indicators"
    query = await answers(client, "GET", path, headers=viewer, params={"coverage_min": "2"})
    for language, words in (
        ("zh", "应小于或等于 1"),
        ("en", "Input should be less than or equal to 1"),
    ):
        status, code, detail = query[language]
        assert (status, code) == (422, "invalid_request")
        assert isinstance(detail, list) and len(detail) == 1
        assert (detail[0]["type"], detail[0]["loc"], detail[0]["msg"]) == (
            "less_than_equal",
            ["query", "coverage_min"],
            words,
        )
    not_a_number = await answers(client, "GET", "/api/v1/enterprises/abc", headers=viewer)
    assert not_a_number["zh"][2][0]["msg"] == "应为有效整数，无法把字符串解析为整数"  # type: ignore[index]

    change = {"current_password": password, "new_password": "short"}
    own = "/api/v1/people/me/password"
    short = await answers(client, "POST", own, headers=viewer, json=change)
    assert short["zh"] == (422, "invalid_request", "new_password：密码至少 12 个字符")
    assert short["en"] == (
        422,
        "invalid_request",
        "new_password: a password has at least 12 characters",
    )

    admin = await person(client, database_url, "root", "platform_admin")
    body = {"code": "NEW", "uscc": "91110000000000003X", "name": ""}
    refused = await answers(client, "POST", "/api/v1/enterprises", headers=admin, json=body)
    assert refused["zh"] == (422, "invalid_request", "name: 字符串至少应有 1 个字符")
    assert refused["en"] == (
        422,
        "invalid_request",
        "name: String should have at least 1 character",
    )


async def test_the_consoles_choice_of_language_counts(
    api: tuple[httpx.AsyncClient, int, int],
) -> None:
    client, acme, _ = api
    client.cookies.set("plantwire_lang", "zh-CN")
    got = await client.get(f"/api/v1/enterprises/{acme}", headers={"Accept-Language": "en"})
    assert (got.status_code, got.json()) == (
        401,
        {"error": "invalid_token", "detail": "需要 Bearer 令牌"},
    )
    client.cookies.set("plantwire_lang", "en")
    got = await client.get(f"/api/v1/enterprises/{acme}", headers=ZH)
    assert got.json()["detail"] == "a Bearer token is required"


async def test_a_nul_character_is_refused_in_the_requests_language(
    api: tuple[httpx.AsyncClient, int, int],
) -> None:
    client, _, _ = api
    got = await client.get("/api/v1/enterprises", params={"q": "a\x00b"}, headers=ZH)
    assert (got.status_code, got.json()) == (
        422,
        {"error": "invalid_request", "detail": "不接受 NUL 字符"},
    )
