"""Gateway configs generated for simulated sites: the shared device contract for OPC UA, Modbus
and MQTT devices, TOML rendering, and ``plantwire sim gateway-config``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from typing import Any

import pytest

from plantwire_edge.config import EdgeConfig
from plantwire_sim.gateway_config import (
    gateway_config,
    poll_interval_ms,
    polled_every_ms,
    to_toml,
)
from plantwire_sim.placement import ModbusAddress, plan
from plantwire_sim.scenario import load_scenario

DEMO = load_scenario("demo")
ENTERPRISE = DEMO.enterprises[0]
SITE = ENTERPRISE.sites[0]
ALL = frozenset({"opcua", "modbus", "mqtt"})
MAPS = {
    "opc40501/MachineOperationMode",
    "opc40502/CncChannelProgramStatus",
    "opc40502/CncOperationMode",
    "euromap83/MachineMode",
    "plantwire/ModeCode",
    "plantwire/ExecutionCode",
    "mtconnect/ControllerMode",
    "mtconnect/Execution",
}


def config(protocols: frozenset[str] = ALL, metrics: str = "core") -> dict[str, Any]:
    placement = plan(DEMO, protocols, "127.0.0.1", 5000)
    return gateway_config(
        ENTERPRISE,
        SITE,
        placement.endpoints(),
        "mqtt://central:1883",
        "plantwire",
        protocols=protocols,
        modbus=placement.modbus(),
        mqtt_topics=placement.topics,
        device_broker_url="mqtt://plant:1883",
        metrics=metrics,
    )


def test_default_is_the_opcua_devices_the_gateway_validates() -> None:
    placement = plan(DEMO, frozenset({"opcua"}), "127.0.0.1", 4840)
    data = gateway_config(ENTERPRISE, SITE, placement.endpoints(), "mqtt://127.0.0.1:1883")
    assert {d["kind"] for d in data["devices"]} == {"opcua"}
    edge = EdgeConfig.model_validate(data)
    cnc = next(d for d in data["devices"] if d["device_id"] == "CNC-01")
    assert [t["metric"] for t in cnc["tags"]] == [
        "State/Mode",
        "State/Execution",
        "Spindle/Speed",
        "Production/PartCount",
        "State/Mode",
        "Production/ScrapCount",
    ]
    # the mode comes from OPC 40501, but MDI only shows in OPC 40502 CncOperationMode
    assert [(t.get("map"), t.get("override")) for t in cnc["tags"] if "Mode" in t["metric"]] == [
        ("opc40501/MachineOperationMode", None),
        ("opc40502/CncOperationMode", ["MDI"]),
    ]
    assert cnc["endpoint"] == "opc.tcp://127.0.0.1:4840/plantwire/CNC-01"
    assert len(edge.devices) == 7


@pytest.mark.parametrize("metrics", ["core", "all"])
def test_every_kind_follows_the_device_contract(metrics: str) -> None:
    data = config(metrics=metrics)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in data["devices"]:
        by_kind.setdefault(d["kind"], []).append(d)
    assert {k: len(v) for k, v in by_kind.items()} == {"opcua": 7, "modbus": 1, "mqtt": 3}
    for d in data["devices"]:
        points = d.get("tags") or d.get("registers") or d.get("fields")
        assert points, d["device_id"]
        metrics_of = {p.get("metric") for p in points if "map" not in p} | {
            "State/Mode" if "Mode" in p["map"] else "State/Execution" for p in points if "map" in p
        }
        assert {"State/Mode", "State/Execution"} <= metrics_of, d["device_id"]
        assert {p["map"] for p in points if "map" in p} <= MAPS
    (legacy,) = by_kind["modbus"]
    assert (legacy["host"], legacy["port"], legacy["unit_id"]) == ("127.0.0.1", 5007, 1)
    # LEG-09's shortest program segment is 2 s: polled 8 times in it, every 250 ms
    assert legacy["poll_interval_ms"] == 250 and legacy["timeout_s"] == 3.0
    for r in legacy["registers"]:
        assert r["table"] in ("holding", "input", "coil", "discrete")
        assert r["type"] in ("int16", "uint16", "int32", "uint32", "float32", "bool")
        assert (r["type"] == "bool") == (r["table"] in ("coil", "discrete")) or r.get("bit")
        if r["type"] != "bool":
            assert r["word_order"] == "little" and r["byte_order"] == "big"  # LEG-09
    power = next(r for r in legacy["registers"] if r["metric"] == "Energy/ActivePower")
    assert (power["address"], power["type"], power["datatype"]) == (22, "float32", "Float")
    for d in by_kind["mqtt"]:
        assert d["broker_url"] == "mqtt://plant:1883"
        assert d["topic"] == f"plant/HXP/SZ1/{d['device_id']}"
        assert d["timestamp_path"] == "ts"
        assert d["timestamp_format"] in ("epoch_ms", "iso8601")
        assert all(set(f) <= {"metric", "path", "datatype", "map"} for f in d["fields"])
    if metrics == "all":
        energy = next(d for d in by_kind["mqtt"] if d["device_id"] == "WSH-10")
        assert "phases[0].v" in {f["path"] for f in energy["fields"]}


def test_protocols_select_the_kinds() -> None:
    assert {d["kind"] for d in config(frozenset({"modbus"}))["devices"]} == {"modbus"}
    assert {d["kind"] for d in config(frozenset({"mqtt", "opcua"}))["devices"]} == {"mqtt", "opcua"}


def test_toml_round_trip() -> None:
    data = config(metrics="all")
    assert tomllib.loads(to_toml(data)) == data


def test_ports_follow_the_plan_in_scenario_order() -> None:
    placement = plan(DEMO, ALL, "10.0.0.5", 6000)
    assert [h.port for h in placement.opcua] == list(range(6000, 6007))
    assert placement.modbus() == {"LEG-09": ModbusAddress("10.0.0.5", 6007, 1)}
    site = plan(load_scenario("chain"), ALL, "127.0.0.1", 7000)
    assert len(site.opcua) == 7  # the chain serves OPC UA per site
    assert all(len(h.machines) > 1 for h in site.opcua)


def test_cli_prints_the_same_config() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantwire_sim.cli",
            "sim",
            "gateway-config",
            "--scenario",
            "demo",
            "--base-port",
            "5000",
            "--mqtt-url",
            "mqtt://plant:1883",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    printed = tomllib.loads(out)
    expected = config()
    expected["mqtt_url"] = "mqtt://plant:1883"
    for d in expected["devices"]:
        if d["kind"] == "mqtt":
            d["broker_url"] = "mqtt://plant:1883"
    assert printed == expected


def test_modbus_is_polled_in_step_with_the_simulated_clock() -> None:
    """The config's poll interval is simulated time, the same at any speed (the gateway polls
    in its clock's time); at speed s two polls are at least 10 wall ms, 10 s simulated ms,
    apart."""
    legacy = next(m for m in SITE.machines if m.code == "LEG-09")
    slow = legacy.model_copy(update={"program": legacy.program[:1] + legacy.program[1:2]})
    assert min(g.seconds for g in slow.program) == 4  # 6 s and 4 s segments: every 500 ms
    assert poll_interval_ms(legacy) == 250 and poll_interval_ms(slow) == 500
    speeds = (1, 10, 25, 100, 600)
    assert [polled_every_ms(legacy, s) for s in speeds] == [250, 250, 250, 1000, 6000]
    placement = plan(DEMO, ALL, "127.0.0.1", 5000)
    config = gateway_config(
        ENTERPRISE,
        SITE,
        placement.endpoints(),
        "mqtt://central:1883",
        protocols=ALL,
        modbus=placement.modbus(),
    )
    (device,) = (d for d in config["devices"] if d["kind"] == "modbus")
    assert device["poll_interval_ms"] == 250  # simulated ms, at any speed
    with pytest.raises(ValueError, match="speed"):
        polled_every_ms(legacy, 0)
