"""Gateways through ``/api/v1`` (issues 12 and 15): an enterprise admin lists its gateways,
provisions one (its broker login, once, in a config the gateway runs as answered) and revokes
it, against a real Mosquitto over TLS started with the files ``broker init`` wrote and reloaded
by the API; the API's answers are checked against what the broker then admits."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from plantwire_bus.mosquitto import MosquittoProcess, find_mosquitto, free_port, start_mosquitto
from plantwire_bus.mqtt import MqttClient, MqttError, parse_mqtt_url
from plantwire_edge.config import EdgeConfig
from plantwire_platform.gateways.provisioning import BrokerDir, init_broker
from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import create_app
from tests.conftest import missing
from tests.platform.identities import person, secured

REGISTRY = """
[[enterprises]]
code = "G"
uscc = "91110000MA0000000X"
name = "Two Sites Works"

[[enterprises.sites]]
code = "A"
name = "Site A"
edge_node = "GW-A"
lines = [{ code = "L1", name = "Line 1" }]
equipment = [
  { code = "M1", name = "Lathe", line = "L1", control_type = "CNC", declared_nc = true },
]

[[enterprises.sites]]
code = "B"
name = "Site B"
edge_node = "GW-B"

[[enterprises]]
code = "H"
uscc = "91110000MA0000001X"
name = "Neighbour Works"
"""
DEVICE = {"kind": "opcua", "device_id": "M1", "endpoint": "opc.tcp://10.0.0.7:4840",
          "tags": [{"metric": "Spindle/Speed", "node": "nsu=urn:lathe;s=Speed"}]}  # fmt: skip


@dataclass
class World:
    http: httpx.AsyncClient
    broker: BrokerDir
    mosquitto: MosquittoProcess
    ids: dict[str, int]
    admins: dict[str, dict[str, str]]  # enterprise code -> its admin's headers
    viewer: dict[str, str]


@contextlib.asynccontextmanager
async def running_broker(
    database_url: str, folder: Path
) -> AsyncIterator[tuple[BrokerDir, MosquittoProcess, int]]:
    """The broker files ``broker init`` writes (CA, server certificate, the host's login) and a
    Mosquitto started with them over TLS, whose pid file the API reloads it by; yields the
    broker directory, the Mosquitto and its TLS port."""
    if find_mosquitto() is None:
        missing("no mosquitto")
    broker = BrokerDir(folder / "broker")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        host = await init_broker(conn, broker, "plantwire-host", ("127.0.0.1",))
    tls = free_port()
    mosquitto = start_mosquitto(
        folder / "mosquitto",
        secrets_dir=broker.path,
        tls_port=tls,
        login=("plantwire-host", host),
    )
    try:
        deadline = time.monotonic() + 10
        while not broker.pid_file.exists():
            assert time.monotonic() < deadline, mosquitto.log_path.read_text()
            await asyncio.sleep(0.05)
        yield broker, mosquitto, tls
    finally:
        mosquitto.stop()


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await import_registry(conn, parse_registry(REGISTRY))
        cur = await conn.execute("SELECT code, id FROM enterprise")
        ids = {str(code): int(i) for code, i in await cur.fetchall()}
    async with running_broker(database_url, tmp_path) as (broker, mosquitto, tls):
        settings = secured(
            database_url, broker_dir=str(broker.path), gateway_mqtt_url=f"mqtts://127.0.0.1:{tls}"
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
        ):
            admins = {
                code: await person(http, database_url, f"{code}-admin", "enterprise_admin",
                                   ids[code])
                for code in ("G", "H")
            }  # fmt: skip
            viewer = await person(http, database_url, "g-viewer", "enterprise_viewer", ids["G"])
            yield World(http, broker, mosquitto, ids, admins, viewer)


async def connects(url: str, client_id: str) -> bool:
    """Whether the broker admits the login of ``url`` now (False: refused, not authorized)."""
    client = MqttClient(parse_mqtt_url(url), client_id)
    try:
        await client.connect(5)
    except MqttError as exc:
        assert "Not authorized" in str(exc), exc
        return False
    await client.disconnect()
    return True


async def until(url: str, admitted: bool) -> None:
    """Wait for the reloaded broker to admit (or refuse) the login of ``url``."""
    deadline = time.monotonic() + 10
    while await connects(url, "probe") != admitted:
        assert time.monotonic() < deadline, (
            f"the broker still {'refuses' if admitted else 'admits'}"
        )
        await asyncio.sleep(0.1)


async def test_an_admin_provisions_lists_and_revokes_its_gateways(
    world: World, tmp_path: Path
) -> None:
    w, g = world, world.ids["G"]
    base = f"/api/v1/enterprises/{g}/gateways"
    admin = w.admins["G"]
    listed = await w.http.get(base, headers=w.viewer)
    assert listed.status_code == 200, listed.text
    assert [(x["site"], x["edge_node"], x["username"], x["credential"]) for x in listed.json()] == [
        ("A", "GW-A", "G/GW-A", "none"),
        ("B", "GW-B", "G/GW-B", "none"),
    ]
    # a device that is no machine of the site: refused, and no login issued for it
    stray = await w.http.post(f"{base}/GW-A/credential", headers=admin,
                              json={"devices": [{**DEVICE, "device_id": "M9"}]})  # fmt: skip
    assert stray.status_code == 422, stray.text
    assert stray.json()["detail"] == "devices[0].device_id: 'M9' is no equipment of site A"
    ca_file = tmp_path / "gw-a" / "ca.crt"
    made = await w.http.post(
        f"{base}/GW-A/credential",
        headers=admin,
        json={"devices": [DEVICE], "ca_file": str(ca_file)},
    )
    assert made.status_code == 201, made.text
    issued = made.json()
    config = tomllib.loads(issued["config"])
    assert (config["group_id"], config["edge_node_id"], config["primary_host_id"]) == (
        "G", "GW-A", "plantwire")  # fmt: skip
    assert config["devices"] == [DEVICE] and config["mqtt_url"] == issued["mqtt_url"]
    EdgeConfig.model_validate(config)  # what the gateway reads
    address = parse_mqtt_url(issued["mqtt_url"])
    assert (address.username, address.password, address.ca_file, address.tls) == (
        "G/GW-A", issued["password"], str(ca_file), True)  # fmt: skip
    assert issued["ca_certificate"] == w.broker.ca.cert.read_text()
    ca_file.parent.mkdir()
    ca_file.write_text(issued["ca_certificate"])
    await until(issued["mqtt_url"], admitted=True)
    async with MqttClient(address, "gw-a") as gateway:  # its own topics, nobody else's
        await gateway.publish("spBv1.0/G/NBIRTH/GW-A", b"")
        with pytest.raises(MqttError, match="Not authorized"):
            await gateway.publish("spBv1.0/G/NBIRTH/GW-B", b"")
    again = await w.http.post(f"{base}/GW-A/credential", headers=admin)
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    # without devices the config says how to add this site's machines
    bare = await w.http.post(f"{base}/GW-B/credential", headers=admin)
    assert bare.status_code == 201, bare.text
    assert 'device_id = "CNC-01"' in bare.json()["config"]  # site B has no machines yet
    now = {x["edge_node"]: x["credential"] for x in (await w.http.get(base, headers=admin)).json()}
    assert now == {"GW-A": "issued", "GW-B": "issued"}
    # another enterprise's admin, a viewer: refused; an edge node of no site: not found
    for headers, path, status in (
        (w.admins["H"], f"{base}/GW-A/revoke", 403),
        (w.viewer, f"{base}/GW-A/revoke", 403),
        (admin, f"{base}/ROGUE/credential", 404),
        (w.admins["H"], f"/api/v1/enterprises/{w.ids['H']}/gateways/GW-A/credential", 404),
    ):
        got = await w.http.post(path, headers=headers)
        assert got.status_code == status, (path, got.text)
    revoked = await w.http.post(f"{base}/GW-A/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["credential"] == "revoked" and revoked.json()["revoked_at"]
    await until(issued["mqtt_url"], admitted=False)
    assert await connects(bare.json()["mqtt_url"].split("?")[0] + f"?cafile={ca_file}", "gw-b")
    twice = await w.http.post(f"{base}/GW-A/revoke", headers=admin)
    assert (twice.status_code, twice.json()["error"]) == (409, "conflict")
    anew = await w.http.post(f"{base}/GW-A/credential", headers=admin)  # a new login, anew
    assert anew.status_code == 201 and anew.json()["password"] != issued["password"]


async def test_an_api_without_the_broker_directory_issues_nothing(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await import_registry(conn, parse_registry(REGISTRY))
        cur = await conn.execute("SELECT id FROM enterprise WHERE code = 'G'")
        g = int((await cur.fetchone() or [0])[0])
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        admin = await person(http, database_url, "g-admin", "enterprise_admin", g)
        got = await http.post(f"/api/v1/enterprises/{g}/gateways/GW-A/credential", headers=admin)
        body: dict[str, Any] = got.json()
        assert (got.status_code, body["error"]) == (503, "not_configured")
        assert "PLANTWIRE_BROKER_DIR" in body["detail"]
        listed = await http.get(f"/api/v1/enterprises/{g}/gateways", headers=admin)
        assert [x["credential"] for x in listed.json()] == ["none", "none"]
