"""The API's error details in the request's language, on a real PostgreSQL: ``Accept-Language``
zh* gets Chinese, en* and anything else English (what clients always got), the console's
``plantwire_lang`` cookie counts; the error codes never change. The expected words are written
out here, not read from the catalogue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from plantwire_platform.errors import refusal
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
    month = await answers(client, "GET", path, headers=viewer, params={"from": "2026-13-01"})
    assert month["zh"][2][0]["msg"].endswith("：月的值超出预期范围 1-12")  # type: ignore[index]
    assert month["en"][2][0]["msg"].endswith(", month value is outside expected range of 1-12")  # type: ignore[index]
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


SHEET_HEADER = "site,line,code,name,control_type,declared_nc,processes,ideal_cycle_s\n"


async def test_registry_gateway_and_database_refusals_are_worded_too(
    api: tuple[httpx.AsyncClient, int, int], database_url: str
) -> None:
    """What the registry's checks, an equipment sheet, an entry's edit, a gateway's device list
    and PostgreSQL refuse: each in the request's language, the English as it always was."""
    client, acme, _ = api
    admin = await person(client, database_url, "ada", "enterprise_admin", acme)
    base = f"/api/v1/enterprises/{acme}"
    site = {"code": "S1", "name": "Plant", "edge_node": "GW1"}
    assert (await client.post(f"{base}/sites", json=site, headers=admin)).status_code == 201
    line = {"code": "L1", "name": "Line"}
    assert (
        await client.post(f"{base}/sites/S1/lines", json=line, headers=admin)
    ).status_code == 201

    document = (
        'code = "ACME"\nuscc = "91110000000000001X"\nname = "ACME"\n'
        '[[sites]]\ncode = "S1"\nname = "Plant"\nedge_node = "GW1"\ntimezone = "Mars/Olympus"\n'
    )
    toml = {"Content-Type": "application/toml", **admin}
    zone = await answers(client, "PUT", f"{base}/registry", headers=toml, content=document)
    assert zone["zh"] == (
        422,
        "invalid_request",
        "<body>: sites[0]: 站点 S1：未知时区 'Mars/Olympus'",
    )
    assert (
        zone["en"]
        == zone["none"]
        == (
            422,
            "invalid_request",
            "<body>: sites[0]: site S1: unknown time zone 'Mars/Olympus'",
        )
    )
    broken = await answers(client, "PUT", f"{base}/registry", headers=toml, content="code = =\n")
    assert broken["zh"] == (422, "invalid_request", "<body>：TOML 无效（第 1 行，第 8 列）")
    assert broken["en"] == (422, "invalid_request", "<body>: invalid TOML (line 1, column 8)")

    shift = await answers(
        client, "PATCH", f"{base}/sites/S1", headers=admin, json={"shifts": "6-14"}
    )
    assert shift["zh"] == (
        422,
        "invalid_request",
        "sites[0]: 站点 S1：班次：班次 '6-14' 有误：应为 HH:MM-HH:MM",
    )
    assert shift["en"] == (
        422,
        "invalid_request",
        "sites[0]: site S1: shifts: bad shift '6-14': expected HH:MM-HH:MM",
    )
    missing = await answers(client, "PATCH", f"{base}/sites/S1/lines/L9", headers=admin, json={})
    assert missing["zh"] == (404, "not_found", "找不到产线 L9")
    assert missing["en"] == (404, "not_found", "line L9 not found")
    taken = await answers(client, "POST", f"{base}/sites/S1/lines", headers=admin, json=line)
    assert taken["zh"] == (409, "conflict", "code：产线 L1 已存在")
    assert taken["en"] == (409, "conflict", "code: line L1 exists already")

    sheet = SHEET_HEADER + "S1,L1,M1,Mill,LASER,maybe,,\nS9,L1,M2,Lathe,CNC,false,,\n"
    csv = {"Content-Type": "text/csv", **admin}
    rows = await answers(client, "PUT", f"{base}/registry/equipment", headers=csv, content=sheet)
    assert rows["zh"] == (
        422,
        "invalid_request",
        [
            {
                "row": 2,
                "field": "control_type",
                "message": "'LASER' 不是 CNC、PLC、DCS、ROBOT、MANUAL 之一",
            },
            {"row": 2, "field": "declared_nc", "message": "'maybe' 不是 true 或 false"},
            {"row": 3, "field": "site", "message": "没有站点 'S9'（已有：S1）"},
        ],
    )
    assert [(p["row"], p["field"], p["message"]) for p in rows["en"][2]] == [  # type: ignore[attr-defined]
        (2, "control_type", "'LASER' is not one of CNC, PLC, DCS, ROBOT, MANUAL"),
        (2, "declared_nc", "'maybe' is not true or false"),
        (3, "site", "no site 'S9' (known: S1)"),
    ]

    devices = {"devices": [{"kind": "opcua", "device_id": None}]}
    gateway = await answers(
        client, "POST", f"{base}/gateways/GW1/credential", headers=admin, json=devices
    )
    assert gateway["zh"] == (
        422,
        "invalid_request",
        "devices[0].device_id：“None”不是站点 S1 的设备",
    )
    null = {"devices": [{"kind": "opcua", "device_id": "M1", "endpoint": None}]}
    sheet = SHEET_HEADER + "S1,L1,M1,Mill,CNC,true,,\n"
    assert (
        await client.put(f"{base}/registry/equipment", headers=csv, content=sheet)
    ).status_code == 200
    nulls = await answers(
        client, "POST", f"{base}/gateways/GW1/credential", headers=admin, json=null
    )
    assert nulls["zh"] == (
        422,
        "invalid_request",
        "devices[0].endpoint：TOML 没有 null（请省略这个键）",
    )
    assert nulls["en"] == (
        422,
        "invalid_request",
        "devices[0].endpoint: TOML has no null (leave the key out)",
    )


async def waiting_on_a_lock(database_url: str) -> None:
    """Until a statement of the API waits for a lock (the row another transaction holds)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO partner_client%%'"
            )
            if (await cur.fetchone() or (0,))[0]:
                return
            await asyncio.sleep(0.02)


async def test_what_postgresql_refuses_is_worded_not_passed_on(
    api: tuple[httpx.AsyncClient, int, int], database_url: str
) -> None:
    """Two registrations of one username at once: the API's check passes for both, the
    database refuses the second by its primary key, and the answer names the constraint in
    the request's words, not PostgreSQL's English."""
    client, acme, _ = api
    admin = await person(client, database_url, "root", "platform_admin")
    found = {}
    for language, headers in (("zh", ZH), ("en", {"Accept-Language": "en"})):
        username = f"twin.{language}"
        async with await psycopg.AsyncConnection.connect(database_url) as other:
            await other.execute(  # the other registration, not yet committed
                "INSERT INTO partner_client (id, enterprise_id, role, name)"
                " VALUES (%s, %s, 'enterprise_viewer', '')",
                (username, acme),
            )
            body = {"username": username, "role": "enterprise_viewer", "enterprise_id": acme}
            racing = asyncio.create_task(
                client.post("/api/v1/people", json=body, headers={**admin, **headers})
            )
            await asyncio.wait_for(waiting_on_a_lock(database_url), 60)
            await other.commit()
        got = await racing
        found[language] = (got.status_code, got.json(), got.headers["vary"])
    assert found["zh"] == (
        409,
        {
            "error": "conflict",
            "detail": "已存在（表 partner_client 的约束 partner_client_pkey）；"
            "可能另一个请求刚刚创建了它",
        },
        "Accept-Language, Cookie",
    )
    assert found["en"][:2] == (
        409,
        {
            "error": "conflict",
            "detail": "this exists already (constraint partner_client_pkey of table"
            " partner_client); another request may just have made it",
        },
    )


@pytest.mark.parametrize(
    ("value", "zh", "en"),
    [
        (
            "'2026-01-01 00:00+20:00'::timestamptz",
            "数据库无法接受的时区偏移（SQLSTATE 22009）",
            "a time zone offset the database cannot take (SQLSTATE 22009)",
        ),
        (
            "'300000-01-01'::timestamptz",
            "日期或时间超出数据库的范围（SQLSTATE 22008）",
            "a date or time beyond the database's range (SQLSTATE 22008)",
        ),
        (
            "40000::smallint",
            "数值超出数据库的范围（SQLSTATE 22003）",
            "a number beyond the database's range (SQLSTATE 22003)",
        ),
    ],
)
async def test_a_value_postgresql_refuses_is_named_by_its_kind(
    database_url: str, value: str, zh: str, en: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(psycopg.Error) as caught:
            await conn.execute(f"SELECT {value}")
    said = refusal(caught.value)
    assert (said.worded("zh-CN"), said.worded("en")) == (zh, en)
