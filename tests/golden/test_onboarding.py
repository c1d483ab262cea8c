"""A real plant's onboarding through the API only (issue 15): no scenario file reaches the
registry, and no gateway config comes from the simulator. A platform admin (made as
``plantwire platform admin create`` makes one) registers the enterprise and its first admin; the
enterprise admin describes its site with its gateway, two lines and their process steps (eight
of them key, each with its reason) as a TOML document, and its twelve machines as an equipment
sheet, typed here as a plant engineer would from the plant's own lists. Once the demo's
simulated machines serve, the admin provisions the site's gateway through the API, giving the
addresses of its machines (the plant's own list of how each is read); the gateway runs with the
config the platform answered, written to a file with the broker's CA certificate, over TLS with
its own login on a Mosquitto made by ``broker init`` (the machines' vendor MQTT stays on the
plant's own broker). Every enterprise-level indicator the API then reports -- above all the
verified NC rate -- agrees with what :mod:`plantwire_sim.expected` computes for the same
machines from the built-in scenario and its ground truth.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from plantwire_bus.mosquitto import free_port, start_mosquitto
from plantwire_bus.mqtt import MqttClient, MqttError, parse_mqtt_url
from plantwire_edge.config import EdgeConfig, load_config
from plantwire_platform.gateways.provisioning import BrokerDir, client_url, init_broker
from plantwire_sim.scenario import Scenario
from tests.golden.conftest import Simulation, compare, run_plant
from tests.platform.identities import register, sign_in

pytestmark = pytest.mark.e2e

PLANT = """
code = "HXP"
uscc = "91320594MA1MXY3B2K"
name = "Huaxin Precision Parts Co., Ltd."
region = "CN-JS Suzhou"

[[sites]]
code = "SZ1"
name = "Suzhou plant 1"
timezone = "Asia/Shanghai"
edge_node = "SZ1-GW1"

[[sites.lines]]
code = "L1"
name = "Shaft line"
processes = [
  { code = "OP10", name = "Rough turning", is_key = true, key_reason = "diameter tolerance" },
  { code = "OP20", name = "Milling keyway", is_key = true, key_reason = "position tolerance" },
  { code = "OP30", name = "Finish grinding", is_key = true, key_reason = "surface finish" },
  { code = "OP40", name = "Cross drilling", is_key = true, key_reason = "hole position" },
  { code = "OP50", name = "Bearing assembly", is_key = true, key_reason = "press-fit force" },
  { code = "OP60", name = "Final inspection", is_key = true, key_reason = "release to customer" },
  { code = "OP70", name = "Deburring" },
]

[[sites.lines]]
code = "L2"
name = "Housing line"

[[sites.lines.processes]]
code = "OP110"
name = "Housing injection moulding"
is_key = true
key_reason = "wall thickness"

[[sites.lines.processes]]
code = "OP115"
name = "Cover moulding"

[[sites.lines.processes]]
code = "OP120"
name = "Insert press-fit"
is_key = true
key_reason = "pull-out force"

[[sites.lines.processes]]
code = "OP130"
name = "Parts washing"

[[sites.lines.processes]]
code = "OP140"
name = "Packing"
"""

MACHINES = """\
site,line,code,name,control_type,declared_nc,processes,ideal_cycle_s
SZ1,L1,CNC-01,Turning centre 1,CNC,true,OP10,8
SZ1,L1,CNC-02,Machining centre 2,CNC,true,OP20,
SZ1,L1,CNC-03,Cylindrical grinder 3,CNC,true,OP30,
SZ1,L1,CNC-04,"Drilling centre 4 (declared NC, run by hand)",CNC,true,OP40,
SZ1,L1,STN-05,Manual assembly station 5,MANUAL,false,OP50,
SZ1,L1,INSP-01,Inspection bench (no telemetry),MANUAL,false,OP60,
SZ1,L1,CNC-06,Deburring cell 6,CNC,true,OP70,
SZ1,L2,IMM-07,Injection moulding machine 7 (housings),PLC,true,OP110,25
SZ1,L2,IMM-08,Injection moulding machine 8 (covers),PLC,true,OP115,
SZ1,L2,LEG-09,Legacy insert press 9 (relay-era PLC),PLC,false,OP120,
SZ1,L2,WSH-10,Parts washer 10 (energy box),PLC,true,OP130,
SZ1,L2,STN-11,Packing station 11,MANUAL,false,OP140,
"""
SINCE = "2020-01-01T00:00:00+08:00"
"""When the machines were installed: the registry says so for the past the window lies in."""


ADMIN: dict[str, str] = {}
"""The enterprise admin's username and password, and its enterprise's id, once onboarded."""


async def onboard(base_url: str, database_url: str) -> None:
    password = await register(database_url, "ops", "platform_admin")  # admin create's work
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        root = await sign_in(http, "ops", password)
        made = await http.post(
            "/api/v1/enterprises",
            json={
                "code": "HXP",
                "uscc": "91320594MA1MXY3B2K",
                "name": "Huaxin Precision Parts Co., Ltd.",
                "region": "CN-JS Suzhou",
            },
            headers=root,
        )
        assert made.status_code == 201, made.text
        ent = made.json()["enterprise_id"]
        admin = await http.post(
            "/api/v1/people",
            json={"username": "li.wei", "role": "enterprise_admin", "enterprise_id": ent},
            headers=root,
        )
        assert admin.status_code == 201, admin.text
        ADMIN.update(password=admin.json()["password"], enterprise=str(ent))
        http.headers.update(await sign_in(http, "li.wei", admin.json()["password"]))
        plant = await http.put(
            f"/api/v1/enterprises/{ent}/registry",
            content=PLANT,
            headers={"content-type": "application/toml"},
        )
        assert plant.status_code == 200, plant.text
        assert (plant.json()["processes"], plant.json()["key_processes"]) == (12, 8)
        machines = await http.put(
            f"/api/v1/enterprises/{ent}/registry/equipment",
            content=MACHINES,
            headers={"content-type": "text/csv"},
            params={"effective": SINCE},
        )
        assert machines.status_code == 200, machines.text
        assert machines.json()["equipment"] == 12


async def provision(
    base_url: str, sim: Simulation, scenario: Scenario, plant_mqtt_url: str, workdir: Path
) -> EdgeConfig:
    """The enterprise admin provisions site SZ1's gateway through the API with the addresses of
    its machines; the platform's answer is written where the gateway reads it."""
    machines = sim.gateway_config(scenario, "HXP", "SZ1", plant_mqtt_url, "", plant_mqtt_url)
    ca_file = workdir / "gateway" / "ca.crt"
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        headers = await sign_in(http, "li.wei", ADMIN["password"])
        got = await http.post(
            f"/api/v1/enterprises/{ADMIN['enterprise']}/gateways/SZ1-GW1/credential",
            json={"devices": machines["devices"], "ca_file": str(ca_file)},
            headers=headers,
        )
        assert got.status_code == 201, got.text
        listed = await http.get(f"/api/v1/enterprises/{ADMIN['enterprise']}/gateways",
                                headers=headers)  # fmt: skip
        assert [(g["edge_node"], g["credential"]) for g in listed.json()] == [("SZ1-GW1", "issued")]
    ca_file.parent.mkdir()
    ca_file.write_text(got.json()["ca_certificate"])
    path = workdir / "gateway" / "SZ1-GW1.toml"
    path.write_text(got.json()["config"])
    config = load_config(path)
    assert (config.group_id, config.edge_node_id) == ("HXP", "SZ1-GW1")
    assert parse_mqtt_url(config.mqtt_url).username == "HXP/SZ1-GW1"
    deadline = time.monotonic() + 10  # the broker was told to reread its logins (SIGHUP)
    while True:
        try:
            async with MqttClient(parse_mqtt_url(config.mqtt_url), "SZ1-GW1-probe"):
                return config
        except MqttError:
            assert time.monotonic() < deadline, "the broker does not admit the new gateway"
            await asyncio.sleep(0.1)


@pytest.mark.backends("postgres")  # the same figures on TimescaleDB: test_golden's demo hour
async def test_a_plant_onboarded_through_the_api_reports_the_scenario_figures(
    database_url: str, mqtt_url: str, tmp_path: Path, unique: str
) -> None:
    seconds = 3600
    start_ms = round(time.time() * 1000) - seconds * 1000
    # the platform's broker, as 'plantwire platform broker init' makes it; the session's broker
    # (mqtt_url) is the plant's own network, where the machines' vendor MQTT publishes
    broker = BrokerDir(tmp_path / "broker")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        host = await init_broker(conn, broker, "plantwire-host", ("127.0.0.1",))
    tls = free_port()
    mosquitto = start_mosquitto(
        tmp_path / "mosquitto",
        secrets_dir=broker.path,
        tls_port=tls,
        login=("plantwire-host", host),
    )
    deadline = time.monotonic() + 10
    while not broker.pid_file.exists():  # the API reloads the broker by its pid
        assert time.monotonic() < deadline, mosquitto.log_path.read_text()
        await asyncio.sleep(0.05)
    platform_url = client_url(f"mqtts://127.0.0.1:{tls}", "plantwire-host", host, broker.ca.cert)
    api: list[str] = []

    async def through_the_api(base_url: str) -> None:
        api.append(base_url)
        await onboard(base_url, database_url)

    async def gateways(sim: Simulation, scenario: Scenario) -> list[EdgeConfig]:
        return [await provision(api[0], sim, scenario, mqtt_url, tmp_path)]

    try:
        scenario, report = await run_plant(
            "demo", database_url, platform_url, tmp_path, speed=150, seconds=seconds,
            start_ms=start_ms, host_id=f"o{unique}", onboard=through_the_api, gateways=gateways,
            plant_mqtt_url=mqtt_url,
            api_settings={"broker_dir": str(broker.path),
                          "gateway_mqtt_url": f"mqtts://127.0.0.1:{tls}"},
        )  # fmt: skip
    finally:
        mosquitto.stop()
    result, truth = compare(scenario, report)
    timing = ", ".join(f"{k} {v} s" for k, v in report.wall_s.items())
    # the enterprise's indicators and its region's roll-up; per-machine OEE of the polled
    # Modbus press is the golden tests' (its poll timing, not the registry, decides it)
    figures = [f for f in result.failures if len(f.split(":")[0].split()) == 2]
    assert len(result.rows) > 20 and not figures, f"{timing}:\n" + "\n".join(figures)
    verified = report.enterprises["HXP"]["indicators"]
    rates = {i["name"]: i["value"] for i in verified}
    assert rates["nc_rate_verified"] == truth["HXP"].value("nc_rate_verified") == 0.5
    assert rates["nc_rate_declared"] == 0.625
    refused = ("unregistered_node", "unowned_device")
    assert not [d for d in report.dead_letters if d[0] in refused], report.dead_letters
