"""Fixtures of the console's browser tests: one Chromium per test session (per xdist worker;
the Debian package, see ``.ci/run``), in which each test opens fresh contexts of its own
(:func:`~tests.platform.console.browser.watched`: own cookies and storage), and the plant.

Playwright's objects belong to the event loop that made them, so the browser tests run in the
session's loop: their modules say ``pytest.mark.asyncio(loop_scope=LOOP)``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.conftest import missing
from tests.platform.console.browser import CHROMIUM, FLAGS, LOOP
from tests.platform.console.plant import Plant, running_plant


@pytest_asyncio.fixture(scope="session", loop_scope=LOOP)
async def chromium() -> AsyncIterator[Browser]:
    """The session's Chromium."""
    if not CHROMIUM.exists():
        missing(f"no {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def browser(chromium: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    """The session's Chromium with no context open; a context the test leaves open is closed
    after it, so no test sees another's cookies, storage or pages."""
    marker = request.node.get_closest_marker("asyncio")
    if marker is None or marker.kwargs.get("loop_scope") != LOOP:
        pytest.fail(
            f"{request.node.nodeid}: a browser test runs in the {LOOP} loop:"
            f" pytestmark = pytest.mark.asyncio(loop_scope=LOOP)",
            pytrace=False,
        )
    assert chromium.is_connected(), "the session's Chromium is gone (crashed?)"
    for context in chromium.contexts:
        await context.close()
    yield chromium
    for context in chromium.contexts:
        await context.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def plant(database_url: str, mqtt_url: str, unique: str) -> AsyncIterator[Plant]:
    """Simulated machines, gateway, broker, ingest and the platform's server, running."""
    async with running_plant(database_url, mqtt_url, unique) as running:
        yield running
