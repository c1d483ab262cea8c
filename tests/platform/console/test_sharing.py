"""The data sharing page in a real Chromium: a supplier's admin sees its catalog and a partner's
request, approves it, revokes it, and reads both decisions in the audit log, whose chain the
page shows verified; the partner's admin sees the grant it holds and cannot decide it; a role the
partner interface refuses gets the refusal view and no data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, expect

from plantwire_bus.mosquitto import free_port
from tests.platform.console.browser import screenshot, serving, sign_in, watched
from tests.platform.console.test_skeleton import enterprise
from tests.platform.identities import register, secured
from tests.platform.identities import sign_in as token_of

pytestmark = pytest.mark.e2e


async def offered_and_requested(base: str, supplier: str, partner: str) -> tuple[int, int]:
    """The supplier's admin offers an important-grade dataset to everyone and the partner's
    admin asks for it (important grade: it waits for the supplier). Returns (dataset, grant)."""
    async with httpx.AsyncClient(base_url=base) as client:
        offered = await client.post(
            "/partner/v1/catalog",
            json={
                "code": "SUP.states",
                "title": "Machine states",
                "kind": "states",
                "domain": "production",
                "grade": "important",
                "granularity": "aggregated",
                "purposes": ["quality"],
                "visibility": "public",
            },
            headers=await token_of(client, "sup.admin", supplier),
        )
        assert offered.status_code == 201, offered.text
        dataset = int(offered.json()["id"])
        asked = await client.post(
            "/partner/v1/grants",
            json={
                "dataset_id": dataset,
                "purpose": "quality",
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
            headers=await token_of(client, "par.admin", partner),
        )
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "requested"
        return dataset, int(asked.json()["id"])


async def recorded(database_url: str, grant: int) -> list[tuple[str, str]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT action, outcome FROM partner_audit WHERE grant_id = %s ORDER BY id", (grant,)
        )
        return [(str(a), str(o)) for a, o in await cur.fetchall()]


async def test_approve_then_revoke_a_grant(browser: Browser, database_url: str) -> None:
    sup = await enterprise(database_url, "SUP", "Supplier Works")
    par = await enterprise(database_url, "PAR", "Partner Assembly")
    supplier = await register(database_url, "sup.admin", "enterprise_admin", sup)
    partner = await register(database_url, "par.admin", "enterprise_admin", par)
    async with serving(secured(database_url, api_port=free_port())) as base:
        _, grant = await offered_and_requested(base, supplier, partner)
        async with watched(browser, "zh-CN") as w:
            page = await w.page()
            await sign_in(page, base, "sup.admin", supplier, next="/console/sharing")
            await expect(page.locator("h1")).to_have_text("数据共享")
            await expect(
                page.locator("#catalog tbody tr[data-dataset='SUP.states']")
            ).to_have_count(1)
            waiting = page.locator(f"#requests tbody tr[data-grant='{grant}']")
            await expect(waiting).to_have_count(1)
            await expect(waiting.locator("td").nth(2)).to_have_text(f"企业 #{par}")
            await expect(page.locator("#verification")).to_have_attribute("data-ok", "true")
            await screenshot(page, "sharing", "zh-CN")

            await waiting.locator("button[data-action=approve]").click()
            given = page.locator(f"#grants tbody tr[data-grant='{grant}']")
            await expect(given).to_have_attribute("data-status", "approved")
            await expect(page.locator("#requests tbody tr[data-grant]")).to_have_count(0)
            await expect(page.locator("#status")).to_have_text(f"授权 #{grant} 已批准。")

            await given.locator("button[data-action=revoke]").click()
            await expect(given).to_have_attribute("data-status", "revoked")
            await expect(given.locator("button")).to_have_count(0)
            # both decisions in the audit log the page shows, as the log itself holds them
            audit = page.locator("#audit tbody")
            for action in ("grant.approve", "grant.revoke"):
                row = audit.locator(f"tr[data-action='{action}']")
                await expect(row).to_have_count(1)
                await expect(row).to_have_attribute("data-outcome", "allowed")
                await expect(row.locator("td").nth(5)).to_have_text(f"#{grant}")
            assert await recorded(database_url, grant) == [
                ("grant.request", "allowed"),
                ("grant.approve", "allowed"),
                ("grant.revoke", "allowed"),
            ]
            await expect(page.locator("#verification")).to_have_attribute("data-ok", "true")

            await page.click("[data-language=en]")
            await expect(page.locator("h1")).to_have_text("Data sharing")
            await expect(given.locator("td").nth(5)).to_have_text("Revoked")
            await expect(page.locator("#verification")).to_contain_text("Audit chain verified")
            await screenshot(page, "sharing", "en")
        assert w.unexpected() == []

        # the partner's admin sees the grant it holds, revoked, and nothing to decide
        async with watched(browser, "en") as w:
            page = await w.page()
            await sign_in(page, base, "par.admin", partner, next="/console/sharing")
            held = page.locator(f"#grants tbody tr[data-grant='{grant}']")
            await expect(held).to_have_attribute("data-status", "revoked")
            await expect(held.locator("td").nth(2)).to_have_text("Held")
            await expect(held.locator("td").nth(3)).to_have_text(f"Enterprise #{sup}")
            await expect(page.locator("#content button")).to_have_count(0)
            await expect(page.locator("#requests tbody tr[data-grant]")).to_have_count(0)
        assert w.unexpected() == []


async def test_a_role_the_partner_interface_refuses_sees_no_data(
    browser: Browser, database_url: str
) -> None:
    sup = await enterprise(database_url, "SUP", "Supplier Works")
    par = await enterprise(database_url, "PAR", "Partner Assembly")
    supplier = await register(database_url, "sup.admin", "enterprise_admin", sup)
    partner = await register(database_url, "par.admin", "enterprise_admin", par)
    viewer = await register(database_url, "sup.viewer", "enterprise_viewer", sup)
    async with serving(secured(database_url, api_port=free_port())) as base:
        await offered_and_requested(base, supplier, partner)
        async with watched(browser, "zh-CN") as w:
            w.expected.append("status of 403")
            page = await w.page()
            await sign_in(page, base, "sup.viewer", viewer, next="/console/sharing")
            await expect(page.locator("#refusal")).to_be_visible()
            await expect(page.locator("#refusal-code")).to_have_text("role_forbidden")
            await expect(page.locator("#content")).to_be_hidden()
            await expect(page.locator("#catalog tbody tr")).to_have_count(0)
            await screenshot(page, "sharing-refused", "zh-CN")
        assert w.unexpected() == []
