"""The data sharing page in a real Chromium: a supplier's admin sees its catalog and a partner's
request, approves it, revokes it, and reads both decisions in the audit log, whose chain the
page shows verified; the partner's admin sees the grant it holds and cannot decide it; a
supplier's admin offers a dataset through the form and pages back through the whole audit log;
the partner activates and terminates a grant it holds; a role the partner interface refuses
gets the refusal view and no data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, expect

from plantwire_bus.mosquitto import free_port
from tests.platform.console.browser import (
    HTTP_TIMEOUT_S,
    LOOP,
    screenshot,
    serving,
    sign_in,
    watched,
)
from tests.platform.console.test_skeleton import enterprise
from tests.platform.identities import register, secured
from tests.platform.identities import sign_in as token_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]


async def offered_and_requested(base: str, supplier: str, partner: str) -> tuple[int, int]:
    """The supplier's admin offers an important-grade dataset to everyone and the partner's
    admin asks for it (important grade: it waits for the supplier). Returns (dataset, grant)."""
    async with httpx.AsyncClient(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
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


async def two_enterprises(database_url: str) -> tuple[int, int, str, str]:
    """A supplier's and a partner's enterprise and their admins sup.admin and par.admin:
    (supplier, partner, the admins' passwords)."""
    sup = await enterprise(database_url, "SUP", "Supplier Works")
    par = await enterprise(database_url, "PAR", "Partner Assembly")
    supplier = await register(database_url, "sup.admin", "enterprise_admin", sup)
    partner = await register(database_url, "par.admin", "enterprise_admin", par)
    return sup, par, supplier, partner


async def recorded(database_url: str, grant: int) -> list[tuple[str, str]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT action, outcome FROM partner_audit WHERE grant_id = %s ORDER BY id", (grant,)
        )
        return [(str(a), str(o)) for a, o in await cur.fetchall()]


async def test_approve_then_revoke_a_grant(browser: Browser, database_url: str) -> None:
    _, _, supplier, partner = await two_enterprises(database_url)
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
            await expect(waiting.locator("td").nth(2)).to_have_text("Partner Assembly")
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
            await expect(held.locator("td").nth(3)).to_have_text("Supplier Works")
            await expect(page.locator("#grants button, #requests button")).to_have_count(0)
            await expect(page.locator("#requests tbody tr[data-grant]")).to_have_count(0)
        assert w.unexpected() == []


async def test_a_role_the_partner_interface_refuses_sees_no_data(
    browser: Browser, database_url: str
) -> None:
    sup, _, supplier, partner = await two_enterprises(database_url)
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


async def visible_entries(database_url: str, ent: int, up_to: int) -> list[tuple[int, datetime]]:
    """The audit entries where ``ent`` is a party, up to entry ``up_to``, newest first."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT id, at FROM partner_audit WHERE id <= %(up)s AND (actor_id = %(e)s"
            " OR supplier_id = %(e)s OR partner_id = %(e)s) ORDER BY id DESC",
            {"up": up_to, "e": ent},
        )
        return [(int(i), at) for i, at in await cur.fetchall()]


async def test_offer_hold_and_page_back(browser: Browser, database_url: str) -> None:
    sup, par, supplier, partner = await two_enterprises(database_url)
    async with serving(secured(database_url, api_port=free_port())) as base:
        async with watched(browser, "zh-CN") as w:
            w.expected.append("status of 422")  # the inconsistent offer below
            page = await w.page()
            await sign_in(page, base, "sup.admin", supplier, next="/console/sharing")
            form = page.locator("#offer")
            await form.locator("[name=code]").fill("SUP.counts")
            await form.locator("[name=title]").fill("Part counts")
            await form.locator("[name=kind]").select_option("counts")
            await form.locator("[name=grade]").select_option("important")
            await form.locator("[name=granularity]").select_option("raw")
            await form.locator("[name=purposes]").fill("quality, delivery")
            await form.locator("[name=visibility]").select_option("public")
            await form.locator("button[type=submit]").click()  # raw needs general grade
            await expect(form.locator(".error")).to_contain_text("invalid_request")
            await expect(page.locator("#catalog tbody tr[data-dataset]")).to_have_count(0)
            await form.locator("[name=granularity]").select_option("aggregated")
            await form.locator("button[type=submit]").click()
            offered = page.locator("#catalog tbody tr[data-dataset='SUP.counts']")
            await expect(offered).to_have_count(1)
            await expect(offered.locator("td")).to_have_text(
                [
                    "SUP.counts",
                    "Part counts",
                    "本企业",
                    "计数",
                    "重要",
                    "小时汇总",
                    "quality, delivery",
                    "公开",
                ]
            )
            await expect(page.locator("#status")).to_have_text("数据集 SUP.counts 已发布。")
        assert w.unexpected() == []

        async with httpx.AsyncClient(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
            seller = await token_of(client, "sup.admin", supplier)
            buyer = await token_of(client, "par.admin", partner)
            [dataset] = (await client.get("/partner/v1/catalog", headers=buyer)).json()["items"]
            assert dataset["enterprise_name"] == "Supplier Works"
            asked = await client.post(
                "/partner/v1/grants",
                json={
                    "dataset_id": dataset["id"],
                    "purpose": "quality",
                    "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                },
                headers=buyer,
            )
            grant: dict[str, Any] = asked.json()
            assert (grant["supplier_name"], grant["partner_name"]) == (
                "Supplier Works", "Partner Assembly")  # fmt: skip
            ok = await client.post(f"/partner/v1/grants/{grant['id']}/approve", headers=seller)
            assert ok.status_code == 200, ok.text
            for _ in range(60):  # sixty more entries of the supplier's: more than a page
                assert (await client.get("/partner/v1/catalog", headers=seller)).status_code == 200

        # the partner activates the grant it holds, then ends it
        async with watched(browser, "en") as w:
            page = await w.page()
            await sign_in(page, base, "par.admin", partner, next="/console/sharing")
            held = page.locator(f"#grants tbody tr[data-grant='{grant['id']}']")
            await expect(held).to_have_attribute("data-status", "approved")
            await expect(held.locator("td").nth(3)).to_have_text("Supplier Works")
            await expect(held.locator("button")).to_have_text(["Activate", "Terminate"])
            await expect(page.locator("#offer")).to_be_visible()  # its admins offer too
            await held.locator("button[data-action=activate]").click()
            await expect(held).to_have_attribute("data-status", "active")
            await expect(held.locator("button")).to_have_text(["Terminate"])
            await screenshot(page, "sharing-held", "en")
            await held.locator("button[data-action=terminate]").click()
            await expect(held).to_have_attribute("data-status", "terminated")
            await expect(held.locator("button")).to_have_count(0)
            activated = page.locator("#audit tr[data-action='grant.activate']")
            await expect(activated.locator("td").nth(6)).to_have_text("Supplier Works")
        assert w.unexpected() == []
        assert (await recorded(database_url, grant["id"]))[-2:] == [
            ("grant.activate", "allowed"),
            ("grant.terminate", "allowed"),
        ]

        # the supplier pages back through every entry where it is a party
        async with watched(browser, "zh-CN") as w:
            page = await w.page()
            await sign_in(page, base, "sup.admin", supplier, next="/console/sharing")
            rows = page.locator("#audit tbody tr[data-entry]")
            await expect(rows).to_have_count(50)
            newest = int(await rows.first.get_attribute("data-entry") or 0)
            truth = await visible_entries(database_url, sup, newest)
            assert len(truth) > 50  # more than a page
            older = page.locator("#older")
            while await older.is_visible():
                shown = await rows.count()
                await older.click()
                await expect(rows).not_to_have_count(shown)
            await expect(rows).to_have_count(len(truth))
            ids = [int(await r.get_attribute("data-entry") or 0) for r in await rows.all()]
            assert ids == [i for i, _ in truth]
            # times in the enterprise's zone (no site: UTC), not the browser's (Shanghai)
            at = truth[0][1]
            await expect(rows.first.locator("td").nth(1)).to_have_text(
                at.astimezone(UTC).strftime("%Y/%m/%d %H:%M:%S")
            )
            await expect(page.locator("#audit-count")).to_contain_text(str(len(truth)))
            await screenshot(page, "sharing-audit", "zh-CN")
        assert w.unexpected() == []

        # a chain analyst of the partner (not an admin) reads its times in its zone too
        site = {"code": "P1", "name": "Plant", "edge_node": "P1-GW", "timezone": "America/New_York"}
        async with httpx.AsyncClient(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
            made = await client.post(
                f"/api/v1/enterprises/{par}/sites",
                json=site,
                headers=await token_of(client, "par.admin", partner),
            )
            assert made.status_code == 201, made.text
        analyst = await register(database_url, "par.analyst", "chain_analyst", par)
        async with watched(browser, "en") as w:
            page = await w.page()
            await sign_in(page, base, "par.analyst", analyst, next="/console/sharing")
            rows = page.locator("#audit tbody tr[data-entry]")
            await expect(rows.first).to_be_visible()
            newest = int(await rows.first.get_attribute("data-entry") or 0)
            at = (await visible_entries(database_url, par, newest))[0][1]
            await expect(rows.first.locator("td").nth(1)).to_have_text(
                at.astimezone(ZoneInfo("America/New_York")).strftime("%d/%m/%Y, %H:%M:%S")
            )
        assert w.unexpected() == []
