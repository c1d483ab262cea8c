"""The registry page in a real Chromium: an enterprise's admin reads its sites, lines, process
steps, equipment and gateways; adds a key process step (refused without its reason, as the API
says), changes a machine, imports an equipment sheet (a bad one refused row by row, nothing
written); each change is checked in the registry as the API exports it. A viewer reads without
forms; an admin of another enterprise gets the refusal page and none of the data."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, FilePayload, Page, expect

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
from tests.platform.gateways.test_gateway_api import running_broker, until
from tests.platform.identities import register, secured
from tests.platform.identities import sign_in as token_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope=LOOP)]

SITE: dict[str, Any] = {
    "code": "S1",
    "name": "Plant 1",
    "edge_node": "S1-GW",
    "lines": [
        {
            "code": "L1",
            "name": "Shaft line",
            "processes": [
                {
                    "code": "OP10",
                    "name": "Rough turning",
                    "is_key": True,
                    "key_reason": "diameter tolerance",
                    "equipment": ["M1"],
                }
            ],
        }
    ],
    "equipment": [
        {"code": "M1", "name": "Lathe 1", "line": "L1", "control_type": "CNC", "declared_nc": False}
    ],
}


async def exported(base: str, headers: dict[str, str], ent: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
        got = await client.get(
            f"/api/v1/enterprises/{ent}/registry", params={"format": "json"}, headers=headers
        )
        assert got.status_code == 200, got.text
        found: dict[str, Any] = got.json()
        return found


async def described(
    base: str, ent: int, username: str, password: str, sites: list[dict[str, Any]] | None = None
) -> dict[str, str]:
    """The enterprise gets site S1 (or ``sites``) through the API; returns the admin's
    Authorization header."""
    async with httpx.AsyncClient(base_url=base, timeout=HTTP_TIMEOUT_S) as client:
        headers = await token_of(client, username, password)
        doc = await exported(base, headers, ent)
        put = await client.put(
            f"/api/v1/enterprises/{ent}/registry",
            json={**doc, "sites": sites or [SITE]},
            headers=headers,
        )
        assert put.status_code == 200, put.text
        return headers


def sheet_file(text: str) -> FilePayload:
    return {"name": "machines.csv", "mimeType": "text/csv", "buffer": text.encode()}


def row(page: Page, kind: str, code: str) -> Any:
    return page.locator(f"#{kind}-table tbody tr[data-code='{code}']")


async def test_an_admin_edits_the_registry(browser: Browser, database_url: str) -> None:
    ent = await enterprise(database_url, "HXP", "Huaxia Precision")
    password = await register(database_url, "hxp.admin", "enterprise_admin", ent)
    async with serving(secured(database_url, api_port=free_port())) as base:
        headers = await described(base, ent, "hxp.admin", password)
        async with watched(browser, "zh-CN") as w:
            w.expected += ["status of 422", "status of 409"]  # the refusals provoked below
            page = await w.page()
            await sign_in(page, base, "hxp.admin", password, next="/console/registry")
            await expect(page.locator("h1")).to_have_text("登记")
            await expect(row(page, "site", "S1").locator("[data-field=edge_node]")).to_have_text(
                "S1-GW"
            )
            op10 = row(page, "process", "OP10")
            await expect(op10.locator("[data-field=is_key]")).to_have_text("是")
            await expect(op10.locator("[data-field=equipment]")).to_have_text("M1")
            gateway = page.locator("#gateways tbody tr[data-edge-node='S1-GW']")
            await expect(gateway).to_have_attribute("data-credential", "none")

            # a key process step without its reason: the API's refusal, nothing added
            form = page.locator("#form-process")
            await form.locator("[name=code]").fill("OP20")
            await form.locator("[name=name]").fill("Finish grinding")
            await form.locator("[name=is_key]").check()
            await form.locator("button[type=submit]").click()
            await expect(form.locator(".error")).to_contain_text(
                "key_reason: 关键工序 OP20 须说明为何是关键工序"
            )
            await expect(row(page, "process", "OP20")).to_have_count(0)
            await form.locator("[name=key_reason]").fill("roundness 2 µm")
            await form.locator("button[type=submit]").click()
            await expect(row(page, "process", "OP20")).to_have_count(1)
            await expect(page.locator("#status")).to_have_text("已添加 OP20。")

            # a second site with S1's gateway: refused naming S1 (409), nothing added
            form = page.locator("#form-site")
            await form.locator("[name=code]").fill("S2")
            await form.locator("[name=name]").fill("Plant 2")
            await form.locator("[name=edge_node]").fill("S1-GW")
            await form.locator("button[type=submit]").click()
            await expect(form.locator(".error")).to_contain_text(
                "edge_node：'S1-GW' 已是站点 S1 的网关（一个网关只读取一个站点）"
            )
            await expect(row(page, "site", "S2")).to_have_count(0)

            # M1 becomes declared NC and performs OP20 too
            await row(page, "equipment", "M1").locator("button.edit").click()
            form = page.locator("#form-equipment")
            await expect(form.locator("[name=code]")).to_be_disabled()
            await form.locator("[name=declared_nc]").check()
            await form.locator("[name=processes]").fill("OP10 OP20")
            await form.locator("button[type=submit]").click()
            m1 = row(page, "equipment", "M1")
            await expect(m1.locator("[data-field=declared_nc]")).to_have_text("是")
            await expect(m1.locator("[data-field=processes]")).to_have_text("OP10 OP20")

            # an equipment sheet with a bad row: named by row and field, nothing written
            sheet = "site,line,code,name,control_type,declared_nc,processes,ideal_cycle_s\n"
            bad = sheet + "S1,L1,M2,Lathe 2,CNCX,false,OP10,\nS1,L1,M3,Lathe 3,CNC,maybe,,\n"
            await page.set_input_files("#sheet", files=sheet_file(bad))
            await page.click("#import button[type=submit]")
            problems = page.locator("#problems tbody tr")
            await expect(problems).to_have_count(2)
            await expect(problems.nth(0)).to_have_attribute("data-row", "2")
            await expect(problems.nth(0)).to_have_attribute("data-field", "control_type")
            await expect(problems.nth(0)).to_contain_text(
                "'CNCX' 不是 CNC、PLC、DCS、ROBOT、MANUAL 之一"
            )
            await expect(problems.nth(1)).to_have_attribute("data-row", "3")
            await expect(problems.nth(1)).to_have_attribute("data-field", "declared_nc")
            await expect(problems.nth(1)).to_contain_text("'maybe' 不是 true 或 false")
            await screenshot(page, "registry-sheet-refused", "zh-CN")
            twice = sheet + "S1,L1,M2,Lathe 2,CNC,false,OP10,\nS1,L1,M2,Lathe 2,CNC,false,,\n"
            await page.set_input_files("#sheet", files=sheet_file(twice))
            await page.click("#import button[type=submit]")
            await expect(problems).to_have_count(1)
            await expect(problems.nth(0)).to_have_attribute("data-row", "3")
            await expect(problems.nth(0)).to_contain_text("'M2' 在第 2 行也出现了")
            await expect(row(page, "equipment", "M2")).to_have_count(0)
            good = sheet + "S1,L1,M2,Lathe 2,CNC,true,OP20,12\n"
            await page.set_input_files("#sheet", files=sheet_file(good))
            await page.click("#import button[type=submit]")
            await expect(row(page, "equipment", "M2")).to_have_count(1)
            await expect(page.locator("#problems")).to_be_hidden()
            await screenshot(page, "registry", "zh-CN")

            await page.click("[data-language=en]")
            await expect(page.locator("h1")).to_have_text("Registry")
            await expect(
                row(page, "equipment", "M2").locator("[data-field=declared_nc]")
            ).to_have_text("Yes")
            await screenshot(page, "registry", "en")
            # the API's refusals follow the reader's switch
            await page.set_input_files("#sheet", files=sheet_file(bad))
            await page.click("#import button[type=submit]")
            await expect(problems).to_have_count(2)
            await expect(problems.nth(0)).to_contain_text(
                "'CNCX' is not one of CNC, PLC, DCS, ROBOT, MANUAL"
            )
            await expect(problems.nth(1)).to_contain_text("'maybe' is not true or false")
            await screenshot(page, "registry-sheet-refused", "en")
        assert w.unexpected() == []

        # what the page did is what the registry holds now
        doc = await exported(base, headers, ent)
        [site] = doc["sites"]
        [line] = site["lines"]
        processes = {p["code"]: p for p in line["processes"]}
        assert processes["OP20"]["is_key"] is True
        assert processes["OP20"]["key_reason"] == "roundness 2 µm"
        assert sorted(processes["OP20"]["equipment"]) == ["M1", "M2"]
        assert processes["OP10"]["equipment"] == ["M1"]
        machines = {m["code"]: m for m in site["equipment"]}
        assert machines["M1"]["declared_nc"] is True
        assert machines["M2"]["declared_nc"] is True
        assert machines["M2"]["ideal_cycle_s"] == 12
        assert set(machines) == {"M1", "M2"}


async def test_viewers_read_and_others_are_refused(browser: Browser, database_url: str) -> None:
    ent = await enterprise(database_url, "HXP", "Huaxia Precision")
    other = await enterprise(database_url, "OTHER", "Other Works")
    admin = await register(database_url, "hxp.admin", "enterprise_admin", ent)
    viewer = await register(database_url, "hxp.viewer", "enterprise_viewer", ent)
    stranger = await register(database_url, "other.admin", "enterprise_admin", other)
    async with serving(secured(database_url, api_port=free_port())) as base:
        await described(base, ent, "hxp.admin", admin)
        async with watched(browser, "en") as w:
            page = await w.page()
            await sign_in(page, base, "hxp.viewer", viewer, next="/console/registry")
            await expect(row(page, "equipment", "M1")).to_have_count(1)
            await expect(page.locator("#read-only")).to_be_visible()
            await expect(page.locator("form.editor:visible")).to_have_count(0)
            await expect(page.locator("button.edit")).to_have_count(0)
        assert w.unexpected() == []
        async with watched(browser, "zh-CN") as w:
            w.expected.append("status of 403")
            page = await w.page()
            await sign_in(
                page, base, "other.admin", stranger, next=f"/console/registry?enterprise={ent}"
            )
            await expect(page.locator("#refusal")).to_be_visible()
            await expect(page.locator("#refusal-code")).to_have_text("not_bound")
            await expect(page.locator("#content")).to_be_hidden()
            await expect(page.locator("#equipment-table tbody tr")).to_have_count(0)
            await expect(page.locator("#subject")).to_have_text("")
            await screenshot(page, "registry-refused", "zh-CN")
        assert w.unexpected() == []


SITE2: dict[str, Any] = {
    "code": "S2",
    "name": "Plant 2",
    "edge_node": "S2-GW",
    "timezone": "Europe/Berlin",
    "lines": [{"code": "L7", "name": "Gear line"}, {"code": "L8", "name": "Housing line"}],
    "equipment": [],
}


async def test_an_admin_runs_a_gateway_login(
    browser: Browser, database_url: str, tmp_path: Path
) -> None:
    """An admin issues S1-GW's broker login: the page shows it once, and the config and CA it
    offers for download get the gateway into the real broker; revoking it (after a
    confirmation) locks it out. The line field offers the lines of the site chosen."""
    ent = await enterprise(database_url, "HXP", "Huaxia Precision")
    password = await register(database_url, "hxp.admin", "enterprise_admin", ent)
    async with running_broker(database_url, tmp_path) as (broker, _, tls):
        settings = secured(
            database_url,
            api_port=free_port(),
            broker_dir=str(broker.path),
            gateway_mqtt_url=f"mqtts://127.0.0.1:{tls}",
        )
        async with serving(settings) as base:
            await described(base, ent, "hxp.admin", password, [SITE, SITE2])
            async with watched(browser, "zh-CN") as w:
                page = await w.page()
                await sign_in(page, base, "hxp.admin", password, next="/console/registry")
                # the line field: the lines of the site chosen
                form = page.locator("#form-equipment")
                await expect(form.locator("[name=line] option")).to_have_text(["L1"])
                await form.locator("[name=site]").select_option("S2")
                await expect(form.locator("[name=line] option")).to_have_text(["L7", "L8"])

                gateway = page.locator("#gateways tbody tr[data-edge-node='S1-GW']")
                await expect(gateway).to_have_attribute("data-credential", "none")
                await gateway.locator("[data-action=issue]").click()
                issued = page.locator("#issued")
                await expect(issued).to_be_visible()
                await expect(gateway).to_have_attribute("data-credential", "issued")
                await expect(page.locator("#issued-username")).to_have_text("HXP/S1-GW")
                shown = await page.locator("#issued-password").inner_text()
                folder = tmp_path / "gateway"
                folder.mkdir()
                for name, area in (("S1-GW.toml", "issued-config"), ("ca.crt", "issued-ca")):
                    async with page.expect_download() as download:
                        await page.click(f"[data-download={area}]")
                    got = await download.value
                    assert got.suggested_filename == name
                    await got.save_as(folder / name)
                await screenshot(page, "registry-gateway-login", "zh-CN")
                await page.click("#issued [data-action=done]")
                await expect(issued).to_be_hidden()
                assert shown not in await page.locator("body").inner_text()  # shown once

                config = tomllib.loads((folder / "S1-GW.toml").read_text())
                assert (config["group_id"], config["edge_node_id"]) == ("HXP", "S1-GW")
                assert f":{shown}@" in config["mqtt_url"]
                assert (folder / "ca.crt").read_text() == broker.ca.cert.read_text()
                # the config's CA is read beside it: the login gets into the broker
                url = config["mqtt_url"].split("?")[0] + f"?cafile={folder / 'ca.crt'}"
                await until(url, admitted=True)

                # revoking asks first; cancelled, nothing happens
                await gateway.locator("[data-action=revoke]").click()
                await expect(gateway.locator(".confirm")).to_contain_text("S1-GW")
                await screenshot(page, "registry-gateway-revoke", "zh-CN")
                await gateway.locator("[data-action=cancel]").click()
                await expect(gateway.locator(".confirm")).to_have_count(0)
                await expect(gateway).to_have_attribute("data-credential", "issued")
                await page.click("[data-language=en]")
                await gateway.locator("[data-action=revoke]").click()
                await expect(gateway.locator(".confirm")).to_contain_text("Revoke the broker login")
                await gateway.locator("[data-action=confirm-revoke]").click()
                await expect(gateway).to_have_attribute("data-credential", "revoked")
                await expect(page.locator("#status")).to_have_text("Login of S1-GW revoked.")
                await until(url, admitted=False)
                await expect(gateway.locator("[data-action=issue]")).to_be_visible()
                await screenshot(page, "registry-gateway-revoked", "en")
            assert w.unexpected() == []
