"""`plantwire demo` end to end: the built-in demo scenario through every real component, and
its indicators compared with values computed by hand from the scenario file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantwire.demo import run_demo
from plantwire_bus.mosquitto import free_port
from plantwire_sim.scenario import SCENARIOS_DIR, Scenario, load_scenario


def scenarios_dir() -> Path:
    return SCENARIOS_DIR


pytestmark = pytest.mark.e2e


def dishonest(scenario: Scenario) -> list[tuple[str, str]]:
    """(process, machine) of key processes on machines declared NC that run mostly by hand."""
    machines = {m.code: m for _, _, m in scenario.machines()}
    found = []
    for e in scenario.enterprises:
        for s in e.sites:
            for line in s.lines:
                for p in line.processes:
                    for code in p.equipment if p.is_key else ():
                        m = machines[code]
                        executing = sum(g.seconds for g in m.program if g.execution == "EXECUTING")
                        auto = sum(
                            g.seconds
                            for g in m.program
                            if g.execution == "EXECUTING" and g.mode == "AUTO"
                        )
                        if m.declared_nc and executing and auto / executing < 0.8:
                            found.append((p.code, code))
    return found


def covered(scenario: Scenario) -> int:
    """Key processes whose equipment is all simulated (so it can be observed)."""
    machines = {m.code: m for _, _, m in scenario.machines()}
    return sum(
        bool(p.equipment) and all(machines[c].protocol != "none" for c in p.equipment)
        for e in scenario.enterprises
        for s in e.sites
        for line in s.lines
        for p in line.processes
        if p.is_key
    )


def hand_computed(scenario: Scenario) -> tuple[int, int, int]:
    """(key processes, declared NC, verified NC) straight from the scenario's programs."""
    machines = {m.code: m for _, _, m in scenario.machines()}
    key = declared = verified = 0
    for e in scenario.enterprises:
        for s in e.sites:
            for line in s.lines:
                for p in line.processes:
                    if not p.is_key:
                        continue
                    key += 1
                    used = [machines[c] for c in p.equipment]
                    declared += bool(used) and all(m.declared_nc for m in used)
                    executing = sum(
                        g.seconds for m in used for g in m.program if g.execution == "EXECUTING"
                    )
                    auto = sum(
                        g.seconds
                        for m in used
                        for g in m.program
                        if g.execution == "EXECUTING" and g.mode == "AUTO"
                    )
                    simulated = bool(used) and all(m.protocol != "none" for m in used)
                    verified += simulated and executing > 0 and auto / executing >= 0.8
    return key, declared, verified


def test_hand_computed_demo_values() -> None:
    scenario = load_scenario("demo")
    key, declared, verified = hand_computed(scenario)
    # the numbers documented at the top of scenarios/demo.toml
    header = (scenarios_dir() / "demo.toml").read_text()
    assert f"{declared}/{key}" in header.replace(" ", "") or f"/ {key}" in header
    assert verified < declared
    assert len(dishonest(scenario)) == 1


async def test_demo_serves_declared_and_verified_rates(
    database_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    scenario = load_scenario("demo")
    key, declared, verified = hand_computed(scenario)
    port = free_port()
    stop = asyncio.Event()
    demo = asyncio.create_task(
        run_demo(scenario, tmp_path, "127.0.0.1", port, stop, database_url, mqtt_url)
    )
    started = time.monotonic()
    body: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while time.monotonic() - started < 90:
                await asyncio.sleep(2)
                assert not demo.done(), demo.exception()
                try:
                    enterprises = (await http.get("/api/v1/enterprises")).json()
                    ent = enterprises[0]["id"]
                    body = (await http.get(f"/api/v1/enterprises/{ent}/indicators")).json()
                except (httpx.HTTPError, KeyError, IndexError):
                    continue
                rates = {i["name"]: i for i in body["indicators"]}
                if time.monotonic() - started > 30 and rates["coverage"]["numerator"] == covered(
                    scenario
                ):
                    break
            explain = (await http.get(f"/api/v1/enterprises/{ent}/indicators/explain")).json()
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)
    rates = {i["name"]: i for i in body["indicators"]}
    assert body["window"]["defaulted"] is True
    declared_rate = rates["nc_rate_declared"]["value"]
    verified_rate = rates["nc_rate_verified"]["value"]
    assert abs(declared_rate - declared / key) <= 0.02
    assert abs(verified_rate - verified / key) <= 0.02
    assert verified_rate < declared_rate  # the dishonest machine is caught
    why = {p["process"]: p for p in explain["segments"][-1]["key_processes"]}
    [(process, machine)] = dishonest(scenario)
    assert why[process]["declared_nc"] and not why[process]["verified_nc"]
    assert why[process]["equipment"] == [machine]  # the explanation names the machine
    assert "AUTO" in why[process]["reason"] and "< 80%" in why[process]["reason"]
    uncovered = [p for p in why.values() if not p["covered"]]
    assert len(uncovered) == len(why) - covered(scenario)  # no telemetry: in the denominator
    machines = [m for _, _, m in scenario.machines()]
    assert rates["networking_rate"]["numerator"] == sum(m.protocol != "none" for m in machines)
    assert rates["networking_rate"]["denominator"] == len(machines)


def test_demo_speed_options() -> None:
    from plantwire.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["demo", "--speed", "600", "--hours", "2"])
    assert (args.speed, args.hours) == (600.0, 2.0)
    assert parser.parse_args(["demo"]).speed == 1.0  # live from now, as before
    for bad in (["--speed", "0.5"], ["--speed", "x"], ["--hours", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["demo", *bad])


def test_ctrl_c_stops_the_demo_and_its_broker_cleanly(database_url: str, tmp_path: Path) -> None:
    """Ctrl-C signals the terminal's whole process group: the demo must still stop its clients
    before the broker it started (no lost-connection noise), exit 0 and leave nothing running."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    env.pop("MQTT_URL", None)  # the demo starts its own mosquitto
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log_file:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantwire.cli",
                "demo",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own group, as a shell gives a foreground job
        )
        try:
            deadline = time.monotonic() + 90
            while "Press Ctrl-C" not in log_path.read_text():
                assert demo.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the demo did not start within 90 s"
                time.sleep(0.5)
            time.sleep(3)  # data flowing
            os.killpg(demo.pid, signal.SIGINT)
            assert demo.wait(timeout=20) == 0, log_path.read_text()[-3000:]
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()
    log = log_path.read_text()
    after = log[log.index("stopping") :]
    assert "stopped." in after
    assert "lost" not in after and "Traceback" not in after, after
    conf = str(tmp_path / "data" / "mosquitto" / "mosquitto.conf")
    left = subprocess.run(["pgrep", "-f", conf], capture_output=True, text=True).stdout
    assert left == "", f"still running: {left}"
