"""Every page of the console (:data:`plantwire_platform.console.pages.PAGES`) in both languages
on a running plant, signed in as the enterprise's admin: each renders its title in the
language, shows its data, leaves a screenshot under ``test-artefacts/console/tour/`` and logs
no browser console error. A page added to the registry without a line here fails the test."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from plantwire_platform.console import catalog
from plantwire_platform.console.pages import PAGES
from tests.platform.console.browser import ARTEFACTS, LOOP, screenshot, sign_in, watched
from tests.platform.console.plant import Plant
from tests.platform.identities import register

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]


WIDER = """() => document.documentElement.scrollWidth > innerWidth
  ? [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right
      > innerWidth + 1).slice(0, 5).map((e) => e.tagName + '#' + e.id + '.' + e.className)
  : []"""


def tour(plant: Plant) -> dict[str, tuple[str, str]]:
    """Each page: its address on this plant, and an element that holds its data once shown."""
    own = plant.enterprise_id
    return {
        "": ("/console/", "#enterprises tbody tr"),
        "floor": (f"/console/floor?enterprise={own}", ".tile[data-online=true]"),
        "machine": (
            f"/console/machine?enterprise={own}&site=S1&equipment=DRILL-2&metric=Spindle/Speed",
            "#sessions tbody tr",
        ),
        "indicators": (f"/console/indicators?enterprise={own}", "#processes tbody tr"),
        "sharing": ("/console/sharing", "#verification[data-ok=true]"),
        "registry": (f"/console/registry?enterprise={own}", "#equipment-table tbody tr[data-code]"),
        # the plant's enterprise is in no chain, park or region: the page says so
        "groups": ("/console/groups", "#content > p.status"),
        "signin": ("/console/signin", "#signin"),
    }


async def test_every_page_in_both_languages(browser: Browser, plant: Plant) -> None:
    stops = tour(plant)
    assert set(stops) == {page.name for page in PAGES}, "a page without a stop on the tour"
    password = await register(
        plant.database_url, "tour.admin", "enterprise_admin", plant.enterprise_id
    )
    for language in catalog.LANGUAGES:
        async with watched(browser, language) as w:
            page = await w.page()
            await sign_in(page, plant.base, "tour.admin", password)
            for item in PAGES:
                path, data = stops[item.name]
                await page.goto(plant.base + path)
                title = catalog.translate(language, item.title)
                await expect(page.locator("h1")).to_have_text(title)
                await expect(page.locator("html")).to_have_attribute("lang", language)
                await expect(page.locator(data).first).to_be_visible(timeout=20_000)
                await expect(page.locator("#refusal")).to_be_hidden()
                await screenshot(page, f"tour/{item.name or 'home'}", language)
            assert w.unexpected() == [], language
    # on a tablet held upright: every page fits its width (tables scroll within themselves)
    async with watched(browser, "zh-CN", 768, 1024) as w:
        page = await w.page()
        await sign_in(page, plant.base, "tour.admin", password)
        for item in PAGES:
            path, data = stops[item.name]
            await page.goto(plant.base + path)
            await expect(page.locator(data).first).to_be_visible(timeout=20_000)
            overflow = await page.evaluate(WIDER)
            assert overflow == [], f"{item.name or 'home'} is wider than a tablet: {overflow}"
            await screenshot(page, f"tablet/{item.name or 'home'}", "zh-CN")
        assert w.unexpected() == []
    shots = {p.name for p in (ARTEFACTS / "tour").glob("*.png")}
    assert shots >= {
        f"{page.name or 'home'}-{lang}.png" for page in PAGES for lang in catalog.LANGUAGES
    }
