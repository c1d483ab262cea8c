"""The Indicators page on a running plant, in a real Chromium: declared vs verified NC rate with
the machine that lowers the verified rate (hand-computed from the scenario: both key processes
run on equipment declared NC, only LATHE-1 runs in AUTO), the trend by day, both languages; and
a person of another enterprise gets the refusal page on every page about this one."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

import psycopg
import pytest
from playwright.async_api import Browser, Page, expect

from plantwire_bus.mosquitto import free_port
from plantwire_bus.state import EXECUTION_METRIC, Execution
from tests.platform.api.test_indicators_routes import DAYS, seed, seed_production
from tests.platform.console.browser import LOOP, screenshot, serving, sign_in, watched
from tests.platform.console.plant import Plant
from tests.platform.identities import register, secured

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]

CATEGORIES = """() => echarts.getInstanceByDom(document.getElementById('trend'))
  .getOption().xAxis[0].data.length"""


async def figure(page: Page, name: str) -> tuple[str, str]:
    tile = page.locator(f"[data-indicator={name}]")
    return await tile.locator(".value").inner_text(), await tile.locator(".ratio").inner_text()


async def executed(database_url: str, machines: tuple[str, ...], timeout: float = 30) -> None:
    """Wait until the database holds a finished EXECUTING interval of each of ``machines``
    (each runs its program's EXECUTING step first, from its connection on)."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT DISTINCT s.device_id FROM state_interval i"
                " JOIN series s ON s.id = i.series_id"
                " WHERE s.metric = %s AND i.value = %s AND i.end_at IS NOT NULL",
                (EXECUTION_METRIC, Execution.EXECUTING.value),
            )
            done = {str(device) for (device,) in await cur.fetchall()}
            if done >= set(machines):
                return
            assert time.monotonic() < deadline, f"only {sorted(done)} finished executing"
            await asyncio.sleep(0.1)


async def test_verified_rate_and_the_machine_that_lowers_it(browser: Browser, plant: Plant) -> None:
    password = await register(
        plant.database_url, "ind.viewer", "enterprise_viewer", plant.enterprise_id
    )
    await executed(plant.database_url, ("LATHE-1", "DRILL-2"))
    async with watched(browser, "zh-CN") as w:
        page = await w.page()
        await sign_in(page, plant.base, "ind.viewer", password, "/console/indicators")
        # the viewer sees one enterprise: the page takes it without asking
        await expect(page.locator("#processes tbody tr")).to_have_count(2, timeout=20_000)
        assert await figure(page, "nc_rate_declared") == ("100%", "2 / 2")
        assert await figure(page, "nc_rate_verified") == ("50%", "1 / 2")
        assert await figure(page, "networking_rate") == ("100%", "2 / 2")
        await expect(page.locator("#lowering")).to_have_text(
            "拉低核验数控化率的设备：DRILL-2 (OP20 Drilling)"
        )
        op20 = page.locator("#processes tr[data-process=OP20]")
        await expect(op20).to_have_class("lowers")
        await expect(op20.locator(".verdict")).to_have_text("否")
        await expect(page.locator("#processes tr[data-process=OP10] .verdict")).to_have_text("是")
        await expect(op20.locator("td").last).to_have_text("自动模式仅占运行时间的 0%，低于 80%")
        await screenshot(page, "indicators", "zh-CN")

        await page.select_option("select[name=span]", "day")
        await page.wait_for_url("**span=day**")
        await expect(page.locator("#window-text")).not_to_be_empty()
        for _ in range(100):  # a bucket per local day (the page's CSP forbids wait_for_function)
            if await page.evaluate(CATEGORIES) >= 7:
                break
            await asyncio.sleep(0.2)
        assert await page.evaluate(CATEGORIES) >= 7

        await page.click("[data-language=en]")
        await expect(page.locator("select[name=span]")).to_have_value("day")
        await page.select_option("select[name=span]", "")
        await expect(page.locator("#lowering")).to_have_text(
            "Lowering the verified NC rate: DRILL-2 (OP20 Drilling)"
        )
        verified = page.locator("[data-indicator=nc_rate_verified]")
        await expect(verified.locator(".value")).to_have_text("50%")  # the default window's
        await expect(verified.locator(".ratio")).to_have_text("1 of 2")
        await screenshot(page, "indicators", "en")
    assert w.unexpected() == []


async def test_another_enterprise_gets_the_refusal_page(browser: Browser, plant: Plant) -> None:
    async with await psycopg.AsyncConnection.connect(plant.database_url) as conn:
        cur = await conn.execute(
            "INSERT INTO enterprise (code, uscc, name) VALUES ('RIVAL', '91320000MA1R1VA11X',"
            " 'Rival Works') RETURNING id"
        )
        (rival,) = await cur.fetchone() or (0,)
        await conn.commit()
    password = await register(plant.database_url, "rival.admin", "enterprise_admin", int(rival))
    own = plant.enterprise_id
    pages = {
        "floor": f"/console/floor?enterprise={own}",
        "machine": f"/console/machine?enterprise={own}&site=S1&equipment=LATHE-1",
        "indicators": f"/console/indicators?enterprise={own}",
    }
    for language, title in (("zh-CN", "无权查看"), ("en", "Not for you")):
        async with watched(browser, language) as w:
            w.expected.append("the server responded with a status of 403")
            page = await w.page()
            await sign_in(page, plant.base, "rival.admin", password)
            for name, path in pages.items():
                await page.goto(plant.base + path)
                await expect(page.locator("#refusal")).to_be_visible()
                await expect(page.locator("#refusal h2")).to_have_text(title)
                await expect(page.locator("#refusal-code")).to_have_text("not_bound")
                await expect(page.locator("#content")).to_be_hidden()
                assert "LATHE" not in await page.locator("body").inner_text()
                await screenshot(page, f"refused-{name}", language)
            assert [e for e in w.errors if "403" not in e] == []
            assert len(w.errors) >= len(pages)  # each page asked, and was refused


async def test_oee_over_time(browser: Browser, database_url: str) -> None:
    """The enterprise's OEE by day on the hand-computed production of the indicator routes'
    fixture (``seed_production``: LEAD's A1, 30 s ideal cycle), in the site's time zone (UTC)
    while the browser's is Shanghai's."""
    ids = await seed(database_url)
    await seed_production(database_url)
    password = await register(database_url, "lead.viewer", "enterprise_viewer", ids["LEAD"])
    query = urlencode({"enterprise": ids["LEAD"], "span": "day", **DAYS})
    async with serving(secured(database_url, api_port=free_port())) as base:
        async with watched(browser, "zh-CN") as w:
            page = await w.page()
            await sign_in(page, base, "lead.viewer", password)
            await page.goto(f"{base}/console/indicators?{query}")
            rows = page.locator("#oee-buckets tbody tr")
            await expect(rows).to_have_count(2, timeout=30_000)  # bucketed: in a worker
            # day one: A 15/15 h, P 1,200 x 30 s / 15 h, Q 1,170/1,200; day two: A 9/12 h,
            # P 900 x 30 s / 9 h, Q 882/900
            await expect(rows.locator("th")).to_have_text(["10/05", "10/06"])
            await expect(rows.nth(0).locator("td")).to_have_text(["65%", "100%", "66.7%", "97.5%"])
            await expect(rows.nth(1).locator("td")).to_have_text(["61.3%", "75%", "83.3%", "98%"])
            # the whole window: A 24/27 h, P 2,100 x 30 s / 24 h, Q 2,052/2,100
            whole = page.locator("#oee tbody tr").first
            await expect(whole.locator("th")).to_have_text("全企业")
            await expect(whole.locator("td")).to_have_text(["88.9%", "72.9%", "97.7%", "63.3%"])
            # LEAD's one line and one machine, each named with its site (line codes and
            # machine codes are unique only within a site)
            await expect(page.locator("#oee tbody th")).to_have_text(
                ["全企业", "产线 L1（厂区 S）", "A1（厂区 S）"]
            )
            await expect(page.locator("#oee-trend canvas")).to_have_count(1)
            # the window is the address's, cut by day: not "the last 7 days"
            span = page.locator("select[name=span] option:checked")
            await expect(span).to_have_text("所给时间范围，按天")
            await expect(page.locator("#window-text")).to_have_text(
                "2026/10/05 09:00:00 至 2026/10/06 12:00:00"
            )
            await screenshot(page, "indicators-oee", "zh-CN")
            await page.click("[data-language=en]")
            await expect(rows.nth(1).locator("td")).to_have_text(["61.3%", "75%", "83.3%", "98%"])
            await expect(page.locator("#oee tbody th")).to_have_text(
                ["Whole enterprise", "Line L1 (S)", "A1 (S)"]
            )
            await expect(page.locator("#oee-buckets caption")).to_have_text(
                "The enterprise's OEE by period"
            )
            await expect(span).to_have_text("The window asked for, by day")
            await expect(page.locator("#window-text")).to_have_text(
                "05/10/2026, 09:00:00 – 06/10/2026, 12:00:00"
            )
            await screenshot(page, "indicators-oee", "en")
        assert w.unexpected() == []
