"""The OpenAPI document in Chinese: every text of it (the operations' summaries and
descriptions, the responses', parameters' and schemas' descriptions, the info text) has a
translation (a test fails on a missing or stale one, found by walking the whole document), the
code names in a description (``PLANTWIRE_TOKEN_TTL_S``, ``from``...) survive it, and
``/openapi.json?lang=zh-CN``, ``Accept-Language`` and the console's cookie serve it; ``/docs``
and ``/redoc`` ask for the console's language."""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from plantwire_platform import apidoc
from plantwire_platform.server import create_app
from plantwire_platform.settings import PlatformSettings

CODE = re.compile(r"``([^`]+)``")
HAN = re.compile(r"[\u4e00-\u9fff]")


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


def texts(node: object, place: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], str]:
    """Every text of a document wherever it stands: each ``summary`` and ``description``
    string, by its place (a property *named* description is a schema, not a text)."""
    found: dict[tuple[str | int, ...], str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("summary", "description") and isinstance(value, str):
                found[(*place, key)] = value
            else:
                found |= texts(value, (*place, key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found |= texts(value, (*place, n))
    return found


def untexted(node: object) -> object:
    """A document without its texts: the contract itself."""
    if isinstance(node, dict):
        return {
            k: untexted(v)
            for k, v in node.items()
            if not (k in ("summary", "description") and isinstance(v, str))
        }
    if isinstance(node, list):
        return [untexted(v) for v in node]
    return node


def test_every_text_of_the_document_has_its_chinese(app: FastAPI) -> None:
    english = app.openapi()
    chinese = apidoc.translated(english, "zh-CN")
    found = texts(english)
    assert len([p for p in found if p[0] == "components"]) > 60, "schema texts are found"
    assert len([p for p in found if "parameters" in p]) > 20, "parameter texts are found"
    said = texts(chinese)  # once: walking the whole document per text took over a minute
    assert said.keys() == found.keys()
    untranslated = [
        "/".join(map(str, place)) for place, text in found.items() if not HAN.search(said[place])
    ]
    assert untranslated == []
    for place, text in found.items():
        assert codes(text) <= codes(said[place]), place
    assert untexted(chinese) == untexted(english)
    wanted = {key for key, _, _ in apidoc.texts(english)}
    assert sorted(set(apidoc.WORDS.messages("zh-CN")) - wanted) == [], "translations of nothing"


def test_a_new_text_without_chinese_is_found(app: FastAPI) -> None:
    schema = app.openapi()
    grown = copy.deepcopy(schema)
    grown["paths"]["/new"] = {"get": {"summary": "New", "parameters": [
        {"name": "n", "in": "query", "description": "a new parameter"}]}}  # fmt: skip
    grown["components"]["schemas"]["ErrorBody"]["properties"]["error"]["description"] = "new"
    chinese = texts(apidoc.translated(grown, "zh-CN"))
    assert sorted(
        "/".join(map(str, place)) for place, text in chinese.items() if not HAN.search(text)
    ) == [
        "components/schemas/ErrorBody/properties/error/description",
        "paths//new/get/parameters/0/description",
        "paths//new/get/summary",
    ]


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
    assert asked.headers["vary"] == "Accept-Language, Cookie"
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
    assert untexted(chinese) == untexted(english)
    indicators = chinese["paths"]["/api/v1/enterprises/{enterprise_id}/indicators"]["get"]
    start = next(p for p in indicators["parameters"] if p["name"] == "from")
    assert start["description"].startswith("时间窗开始（ISO 8601")
    error = chinese["components"]["schemas"]["ErrorBody"]
    assert error["description"].startswith("每个错误：一个代码")

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


async def test_what_depends_on_the_language_says_so_to_caches(client: httpx.AsyncClient) -> None:
    """Pages, the document and error answers vary by the browser's languages and the cookie
    that keeps the reader's choice."""
    for path in ("/docs", "/redoc", "/console/signin", "/openapi.json", "/api/v1/no-such-route"):
        got = await client.get(path, headers={"Accept-Language": "en"})
        assert got.headers["vary"] == "Accept-Language, Cookie", path
    page = await client.get("/console/signin", headers={"Accept-Language": "en"})
    assert page.headers["content-language"] == "en"
