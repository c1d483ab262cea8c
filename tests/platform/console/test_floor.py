"""The Floor and Machine pages on a running plant, in a real Chromium: each machine's state on
the Floor follows the simulator within 5 s without a reload (server-sent events), and the
Machine page shows its timeline, a metric, its sessions and its clock offset."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.platform.console.browser import LOOP, screenshot, sign_in, watched
from tests.platform.console.plant import Plant
from tests.platform.identities import register

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]

WATCH_S = 16.0
WITHIN_MS = 5000
RECORD = """() => {
  window.seen = [];
  const note = (el) => window.seen.push({t: Date.now(), machine: el.dataset.machine,
    execution: el.dataset.execution, mode: el.dataset.mode});
  document.querySelectorAll('.tile').forEach(note);
  new MutationObserver((changes) => changes.forEach((c) => note(c.target))).observe(
    document.getElementById('sites'),
    {subtree: true, attributes: true, attributeFilter: ['data-execution', 'data-mode']});
}"""

TIMELINE = """() => echarts.getInstanceByDom(document.getElementById('timeline'))
  .getOption().series[0].data.map((d) => [d.value[0], d.value[3]])"""


async def open_floor(page: Page, plant: Plant, password: str) -> None:
    await sign_in(
        page,
        plant.base,
        "floor.viewer",
        password,
        f"/console/floor?enterprise={plant.enterprise_id}",
    )
    await expect(page.locator(".tile")).to_have_count(2)
    for code in ("LATHE-1", "DRILL-2"):
        tile = page.locator(f".tile[data-machine='{code}']")
        await expect(tile).to_have_attribute("data-online", "true", timeout=15_000)
        await expect(tile).not_to_have_attribute("data-execution", "", timeout=15_000)


async def test_floor_follows_the_simulator_within_5_s(browser: Browser, plant: Plant) -> None:
    password = await register(
        plant.database_url, "floor.viewer", "enterprise_viewer", plant.enterprise_id
    )
    async with watched(browser, "zh-CN") as w:
        page = await w.page()
        await open_floor(page, plant, password)
        await page.evaluate(RECORD)
        start_ms = time.time_ns() // 1_000_000
        await asyncio.sleep(WATCH_S)
        seen: list[dict[str, Any]] = await page.evaluate("window.seen")
        end_ms = time.time_ns() // 1_000_000
        await expect(page.locator(".tile[data-machine='LATHE-1'] .connection")).to_have_text("在线")
        await screenshot(page, "floor", "zh-CN")

        delays: list[int] = []
        for machine in ("LATHE-1", "DRILL-2"):
            states = plant.fleet.truth.states(machine)
            for before, change in itertools.pairwise(states):
                same = (before.mode, before.execution) == (change.mode, change.execution)
                if same or not start_ms <= change.ts_ms <= end_ms - WITHIN_MS:
                    continue
                shown = [
                    s["t"]
                    for s in seen
                    if s["machine"] == machine
                    and (s["mode"], s["execution"]) == (change.mode.value, change.execution.value)
                    and change.ts_ms <= s["t"]
                ]
                assert shown and shown[0] - change.ts_ms <= WITHIN_MS, (
                    f"{machine} entered {change.mode.value}/{change.execution.value} at"
                    f" {change.ts_ms}; the page showed it at {shown[:1]}"
                )
                delays.append(shown[0] - change.ts_ms)
        assert len(delays) >= 3, "the simulator changed state too rarely to judge"
        print(f"floor: {len(delays)} state changes shown after {sorted(delays)} ms")

        # the Machine page: timeline, a metric, sessions, clock offset
        await page.click(".tile[data-machine='LATHE-1'] .machine-link")
        await page.wait_for_url("**/console/machine?**")
        await expect(page.locator("#timeline canvas")).to_have_count(1)
        # what the timeline draws, by row: the lathe's program is AUTO, EXECUTING then IDLE
        drawn = await page.evaluate(TIMELINE)
        assert {label for row, label in drawn if row == 0} == {"自动"}
        assert {label for row, label in drawn if row == 1} == {"运行", "空闲"}
        await expect(page.locator("#sessions tbody tr")).to_have_count(1)
        await expect(page.locator("#sessions tbody tr td").nth(1)).to_have_text("仍在线")
        await expect(page.locator("#clock")).to_have_text("网关未报告")  # no gateway does yet
        await page.select_option("select[name=metric]", "Spindle/Speed")
        await expect(page.locator("#metrics canvas")).to_have_count(1)
        await screenshot(page, "machine", "zh-CN")
        await page.click("[data-language=en]")
        await expect(page.locator("#sessions caption")).to_have_text("Online sessions")
        await expect(page.locator("select[name=metric]")).to_have_value("Spindle/Speed")
        await expect(page.locator("#sessions tbody tr td").nth(1)).to_have_text("still online")
        await screenshot(page, "machine", "en")
        await page.goto(f"{plant.base}/console/floor?enterprise={plant.enterprise_id}")
        await expect(page.locator(".tile[data-machine='LATHE-1'] .connection")).to_have_text(
            "Online"
        )
        await screenshot(page, "floor", "en")
    assert w.unexpected() == []
