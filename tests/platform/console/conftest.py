"""Fixtures of the console's browser tests: one Chromium per test module (the Debian package,
see ``.ci/run``), and the errors its pages logged, which fail the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import missing
from tests.platform.console.browser import CHROMIUM, FLAGS
from tests.platform.console.plant import Plant, running_plant


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        missing(f"no {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def plant(database_url: str, mqtt_url: str, unique: str) -> AsyncIterator[Plant]:
    """Simulated machines, gateway, broker, ingest and the platform's server, running."""
    async with running_plant(database_url, mqtt_url, unique) as running:
        yield running
