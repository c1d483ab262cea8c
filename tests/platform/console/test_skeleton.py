"""The console in a real Chromium: sign in with an account, the language from the browser and
a switch that sticks, the overview from ``/api/v1``, sign-out, and ``/docs`` and ``/redoc``
rendering their operations with every host but this machine cut off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from plantwire_bus.mosquitto import free_port
from tests.platform.console.browser import LOOP, offline, screenshot, serving, sign_in, watched
from tests.platform.identities import register, secured

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]


async def enterprise(database_url: str, code: str, name: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "INSERT INTO enterprise (code, uscc, name, region) VALUES (%s, %s, %s, 'CN-JS')"
            " RETURNING id",
            (code, f"9132{code:0>14}", name),
        )
        (found,) = await cur.fetchone() or (0,)
        await conn.commit()
        return int(found)


@pytest_asyncio.fixture(scope="module", loop_scope=LOOP)
async def base(module_database_url: str) -> AsyncIterator[str]:
    """One platform server for the tests of this module that only read pages: its database
    holds no enterprise and no person, and they sign no one in and change nothing (the sign-in
    test, which does, has its own)."""
    async with serving(secured(module_database_url, api_port=free_port())) as url:
        yield url


async def test_sign_in_language_switch_and_sign_out(browser: Browser, database_url: str) -> None:
    own = await enterprise(database_url, "HXP", "Huaxia Precision")
    await enterprise(database_url, "OTHER", "Other Works")
    password = await register(database_url, "li.wei", "enterprise_viewer", own)
    settings = secured(database_url, api_port=free_port())
    async with serving(settings) as base, watched(browser, "zh-CN") as w:
        page = await w.page()
        await page.goto(f"{base}/console/")
        await page.wait_for_url(f"{base}/console/signin?next=%2Fconsole%2F")  # not signed in
        await expect(page.locator("h1")).to_have_text("登录")  # the browser asks for Chinese
        await page.fill("#username", "li.wei")
        await page.fill("#password", "wrong")
        w.expected.append("/console/signin?next=%2Fconsole%2F: Failed to load resource: the server"
                          " responded with a status of 401")  # fmt: skip
        await page.click("button[type=submit]")
        await expect(page.locator("#signin-error")).to_have_text("用户名或密码错误。")
        await sign_in(page, base, "li.wei", password)
        # the overview shows what GET /api/v1/enterprises answers this viewer: its own only
        rows = page.locator("#enterprises tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-enterprise", "HXP")
        await expect(page.locator("#who")).to_have_text("当前用户：li.wei")
        await screenshot(page, "home", "zh-CN")

        await page.click("[data-language=en]")
        await expect(page.locator("h1")).to_have_text("Overview")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await page.goto(f"{base}/console/")  # the choice sticks, whatever the browser asks
        await expect(page.locator("nav [data-nav='']")).to_have_text("Overview")
        await screenshot(page, "home", "en")
        await page.click("[data-language=zh-CN]")
        await expect(page.locator("h1")).to_have_text("概览")
        await page.reload()
        await expect(page.locator("h1")).to_have_text("概览")

        await page.click("#sign-out")
        await page.wait_for_url(f"{base}/console/signin?next=%2Fconsole%2F")
        await screenshot(page, "signin", "zh-CN")
    assert w.unexpected() == []


@pytest.mark.parametrize(
    ("browser_language", "moment", "amount"),
    [
        ("en-US", "03/04/2026, 05:06:07", "1,234,567.5"),  # month first
        ("en-GB", "04/03/2026, 05:06:07", "1,234,567.5"),
        ("en-IN", "04/03/2026, 05:06:07", "12,34,567.5"),  # lakh grouping
        ("en", "04/03/2026, 05:06:07", "1,234,567.5"),  # no region said: en-GB
        ("zh-CN", "2026/03/04 05:06:07", "1,234,567.5"),
    ],
)
async def test_dates_and_numbers_follow_the_readers_locale(
    browser: Browser, base: str, browser_language: str, moment: str, amount: str
) -> None:
    async with watched(browser, browser_language) as w:
        page = await w.page()
        await page.goto(f"{base}/console/signin")
        shown = await page.evaluate(
            "[PW.time('2026-03-04T05:06:07Z', 'UTC'), PW.number(1234567.5, 1)]"
        )
        assert shown == [moment, amount]
    assert w.unexpected() == []


async def test_english_browser_gets_english(browser: Browser, base: str) -> None:
    async with watched(browser, "en-GB") as w:
        page = await w.page()
        await page.goto(f"{base}/console/signin")
        await expect(page.locator("h1")).to_have_text("Sign in")
        await expect(page.locator("label[for=password]")).to_have_text("Password")
        await screenshot(page, "signin", "en")
    assert w.unexpected() == []


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/docs", ".opblock-summary-path[data-path='/api/v1/enterprises']"),
        ("/redoc", "[data-section-id^='operation/enterprise_list_api_v1']"),
    ],
)
@pytest.mark.parametrize(
    ("language", "summary"), [("en", "Enterprise.List"), ("zh-CN", "列出企业")]
)
async def test_api_docs_render_offline(
    browser: Browser, base: str, path: str, operation: str, language: str, summary: str
) -> None:
    async with watched(browser, language) as w:
        tried = await offline(w.context)
        page = await w.page()
        await page.goto(f"{base}{path}")
        await expect(page.locator(operation).first).to_be_visible(timeout=20_000)
        # the operations are described in the console's language (here the browser's)
        await expect(page.get_by_text(summary, exact=True).first).to_be_attached()
        await screenshot(page, path.strip("/"), language)
    assert tried == [], f"{path} reached for other hosts: {tried}"
    assert w.unexpected() == []
