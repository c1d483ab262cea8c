"""The console stays signed in while it is used, past its access tokens' lifetime, in a real
Chromium: its session cookie gets it new short tokens (``POST /auth/refresh``), a new tab of the
same browser is signed in too, and after sign-out nothing is refreshed any more."""

from __future__ import annotations

import asyncio
import time

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, expect

from plantwire_bus.mosquitto import free_port
from tests.platform.console.browser import HTTP_TIMEOUT_S, LOOP, serving, sign_in, watched
from tests.platform.identities import enterprise, register, secured

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]
TTL_S = 10
"""The access tokens' lifetime in this test (the settings' least)."""


async def test_a_page_in_use_outlives_its_token(browser: Browser, database_url: str) -> None:
    hxp = enterprise(database_url, "HXP", "913200000000000HXP")
    password = await register(database_url, "li.wei", "enterprise_viewer", hxp)
    settings = secured(database_url, api_port=free_port(), token_ttl_s=TTL_S)
    async with serving(settings) as base, watched(browser, "en-GB") as w:
        page = await w.page()
        await sign_in(page, base, "li.wei", password)
        rows = page.locator("#enterprises tbody tr")
        await expect(rows).to_have_count(1)
        first = await page.evaluate("JSON.parse(sessionStorage.getItem('plantwire.session')).token")
        # the session cookie is httpOnly: no script of the page can read it
        assert "plantwire_session" not in await page.evaluate("document.cookie")

        signed_in = time.monotonic()
        await asyncio.sleep(TTL_S + 1)
        async with httpx.AsyncClient(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
            old = await client.get(
                "/api/v1/enterprises", headers={"Authorization": f"Bearer {first}"}
            )
        assert old.status_code == 401  # the first token is past its lifetime
        assert time.monotonic() - signed_in > TTL_S

        # the page goes on: the next call is made with a refreshed token, not the sign-in page
        await page.reload()
        await expect(rows).to_have_count(1)
        assert page.url == f"{base}/console/"
        now = await page.evaluate("JSON.parse(sessionStorage.getItem('plantwire.session')).token")
        assert now != first

        # a new tab of the same browser is signed in by the same session
        other = await w.page()
        await other.goto(f"{base}/console/")
        await expect(other.locator("#enterprises tbody tr")).to_have_count(1)
        await expect(other.locator("#who")).to_have_text("Signed in as li.wei")

        # signing out ends the session: no tab refreshes any more
        await page.click("#sign-out")
        await page.wait_for_url(f"{base}/console/signin?next=%2Fconsole%2F")
        await other.evaluate("sessionStorage.clear()")
        await other.goto(f"{base}/console/")
        await other.wait_for_url(f"{base}/console/signin?next=%2Fconsole%2F")
    assert w.unexpected() == []
    with psycopg.connect(database_url) as conn:
        refreshes = conn.execute(
            "SELECT outcome, count(*) FROM partner_audit WHERE action = 'person.refresh'"
            " GROUP BY outcome"
        ).fetchall()
        sessions = conn.execute("SELECT count(*) FROM account_session").fetchone()
    assert dict(refreshes).keys() == {"allowed"} and sessions == (0,)
