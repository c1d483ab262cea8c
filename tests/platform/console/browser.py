"""The console's browser-test harness: the Debian ``chromium`` driven by Playwright (no browser
download), a served platform API, a person signed in through the sign-in page, screenshots
under ``test-artefacts/console/`` and every browser console error collected (a test fails on
any, :func:`no_console_errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlsplit

import uvicorn
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Route

from plantwire_platform.server import api_server
from plantwire_platform.settings import PlatformSettings

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTEFACTS = Path(__file__).resolve().parents[3] / "test-artefacts" / "console"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOOP: Final = "session"
"""The event loop the browser tests and their fixtures run in (conftest.py says why)."""
HTTP_TIMEOUT_S = 60.0
"""The tests' own API calls beside the browser wait this long for an answer (httpx's 5 s
default was too short for a sign-in on a loaded machine: a ReadTimeout in two full-suite runs)."""


START_S = 30.0
"""How long the platform's server may take to start listening."""
STOP_S = 15.0
"""How long it may take to stop: uvicorn gives open connections 2 s, then the app's shutdown
closes its pools. Past that it is forced and cancelled, and the test fails saying so (a hung
server must not hang the suite)."""
CANCELLED_S = 5.0
"""How long a cancelled server may take to end."""


class ServerHung(AssertionError):
    """The platform's server did not start or stop within its bound."""


@contextlib.asynccontextmanager
async def serving(settings: PlatformSettings, stop_s: float = STOP_S) -> AsyncIterator[str]:
    """The platform's HTTP server on ``settings.api_port``; yields its base URL."""
    async with running(api_server(settings), stop_s):
        yield f"http://127.0.0.1:{settings.api_port}"


@contextlib.asynccontextmanager
async def running(server: uvicorn.Server, stop_s: float = STOP_S) -> AsyncIterator[None]:
    """``server`` serving until the block ends, started within :data:`START_S` and stopped
    within ``stop_s`` (else :class:`ServerHung`)."""
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + START_S
        while not server.started:
            if task.done():
                task.result()
            if time.monotonic() > deadline:
                raise ServerHung(f"the server did not start within {START_S} s")
            await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=stop_s)
        if not task.done():
            connections = len(server.server_state.connections)
            server.force_exit = True
            task.cancel()
            await asyncio.wait({task}, timeout=CANCELLED_S)
            raise ServerHung(
                f"the server did not stop within {stop_s} s ({connections} connections open);"
                + (" cancelled" if task.done() else f" still running {CANCELLED_S} s after cancel")
            )
        task.result()  # the server's own failure, if any


@dataclass
class Watched:
    """A browser context whose pages report console errors and failed page scripts."""

    context: BrowserContext
    errors: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    """Fragments of the errors a test provokes on purpose (Chromium logs every refused fetch,
    such as a wrong password's 401)."""

    def unexpected(self) -> list[str]:
        """The errors no test asked for."""
        return [e for e in self.errors if not any(x in e for x in self.expected)]

    async def page(self) -> Page:
        page = await self.context.new_page()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{page.url}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page


@contextlib.asynccontextmanager
async def watched(
    browser: Browser, language: str = "zh-CN", width: int = 1280, height: int = 860
) -> AsyncIterator[Watched]:
    """A fresh browser context (its own cookies and storage) whose browser asks for
    ``language`` first, on a screen of ``width`` x ``height`` CSS pixels (a laptop's by
    default; 768 x 1024 is a tablet's)."""
    context = await browser.new_context(
        locale=language, viewport={"width": width, "height": height}, timezone_id="Asia/Shanghai"
    )
    try:
        yield Watched(context)
    finally:
        await context.close()


async def offline(context: BrowserContext) -> list[str]:
    """Cut the context off every host but this machine; returns the URLs it tried to reach."""
    tried: list[str] = []

    async def only_local(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            tried.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_local)
    return tried


async def sign_in(page: Page, base: str, username: str, password: str, next: str = "") -> None:
    """Sign in through the sign-in page, as a person would; lands on ``next`` (or the
    overview)."""
    target = f"{base}/console/signin" + (f"?next={quote(next, safe='')}" if next else "")
    await page.goto(target)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    landing = base + (next or "/console/")
    await page.wait_for_url(lambda url: url == landing)


async def screenshot(page: Page, name: str, language: str) -> Path:
    """Save the page under ``test-artefacts/console/<name>-<language>.png``."""
    path = ARTEFACTS / f"{name}-{language}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path
