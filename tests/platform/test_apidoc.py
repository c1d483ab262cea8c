"""The OpenAPI document in Chinese: every operation's summary and description, every response
description and the info text have a translation (a test fails on a missing or stale one), the
code names in a description (``PLANTWIRE_TOKEN_TTL_S``, ``from``...) survive it, and
``/openapi.json?lang=zh-CN``, ``Accept-Language`` and the console's cookie serve it; ``/docs``
and ``/redoc`` ask for the console's language."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plantwire_platform import apidoc
from plantwire_platform.server import create_app
from plantwire_platform.settings import PlatformSettings

CODE = re.compile(r"``([^`]+)``")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # the document needs no database: the settings only have to name one
    return create_app(PlatformSettings(database_url="postgresql://nobody@127.0.0.1:9/none"))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def codes(text: str) -> set[str]:
    """The code names a text quotes (``...``), its line breaks read as spaces."""
    return {" ".join(code.split()) for code in CODE.findall(text)}


def needed(schema: dict[str, Any]) -> dict[str, str]:
    """The catalogue keys the document needs, with the English each translates."""
    found = {f"info#{part}": schema["info"][part] for part in ("summary", "description")
             if part in schema["info"]}  # fmt: skip
    for key, operation in apidoc.operations(schema):
        for part in ("summary", "description"):
            if operation.get(part):
                found[f"{key}#{part}"] = operation[part]
        for response in operation.get("responses", {}).values():
            found[f"response#{response['description']}"] = response["description"]
    return found


def test_every_text_of_the_document_has_its_chinese(app: FastAPI) -> None:
    words = apidoc.WORDS.messages("zh-CN")
    wanted = needed(app.openapi())
    assert len([k for k in wanted if k.endswith("#summary")]) > 70
    assert sorted(set(wanted) - set(words)) == [], "untranslated"
    assert sorted(set(words) - set(wanted)) == [], "translations of nothing (stale)"
    for key, english in wanted.items():
        assert words[key].strip() and words[key] != english, key
        assert codes(english) <= codes(words[key]), key


def test_a_new_operation_without_chinese_is_found(app: FastAPI) -> None:
    schema = app.openapi()
    grown = {**schema, "paths": {**schema["paths"], "/new": {"get": {"summary": "New"}}}}
    assert sorted(set(needed(grown)) - set(apidoc.WORDS.messages("zh-CN"))) == ["GET /new#summary"]


async def test_the_document_is_served_in_the_asked_language(client: httpx.AsyncClient) -> None:
    english = (await client.get("/openapi.json")).json()
    assert english["info"]["summary"] == (
        "Verified NC rates and equipment telemetry of manufacturing enterprises."
    )
    sign_in = english["paths"]["/auth/token"]["post"]
    assert sign_in["summary"] == "Person.Sign In"
    assert sign_in["responses"]["401"]["description"].startswith("missing, invalid or expired")

    asked = await client.get("/openapi.json", params={"lang": "zh-CN"})
    assert asked.headers["content-language"] == "zh-CN"
    chinese = asked.json()
    assert chinese["info"]["summary"] == "制造企业经核验的关键工序数控化率与设备遥测数据。"
    sign_in = chinese["paths"]["/auth/token"]["post"]
    assert sign_in["summary"] == "登录"
    assert sign_in["description"].startswith("以人员身份登录：表单字段 ``grant_type=password``")
    assert "PLANTWIRE_TOKEN_TTL_S" in sign_in["description"]
    assert sign_in["responses"]["401"]["description"].startswith("令牌缺失、无效或已过期")
    floor = chinese["paths"]["/api/v1/enterprises/{enterprise_id}/floor"]["get"]
    assert floor["summary"] == "车间现场"
    # the contract is the same: paths, parameters, schemas
    assert chinese["paths"].keys() == english["paths"].keys()
    assert chinese["components"] == english["components"]

    by_header = await client.get("/openapi.json", headers={"Accept-Language": "zh-TW,zh;q=0.9"})
    assert by_header.json() == chinese
    client.cookies.set("plantwire_lang", "zh-CN")
    assert (await client.get("/openapi.json")).json() == chinese
    assert (await client.get("/openapi.json", params={"lang": "en"})).json() == english


async def test_docs_and_redoc_follow_the_console_language(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        default = (await client.get(page)).text  # the console's default: Chinese
        assert "/openapi.json?lang=zh-CN" in default, page
        english = (await client.get(page, headers={"Accept-Language": "en-US"})).text
        assert "/openapi.json?lang=en" in english, page
        client.cookies.set("plantwire_lang", "zh-CN")
        chosen = (await client.get(page, headers={"Accept-Language": "en-US"})).text
        assert "/openapi.json?lang=zh-CN" in chosen, page
        client.cookies.clear()
