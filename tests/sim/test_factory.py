"""The whole simulated factory: deterministic ground truth, time acceleration, scheduled and
injected faults through the control port and the ``plantwire sim fault`` command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plantwire_bus.mosquitto import MosquittoProcess
from plantwire_bus.timeline import FollowedClock
from plantwire_sim.clock import SimClock, parse_start
from plantwire_sim.control import request, serve_control
from plantwire_sim.expected import expected
from plantwire_sim.factory import run_factory
from plantwire_sim.scenario import Scenario, load_scenario
from plantwire_sim.scorecard import simulate
from plantwire_sim.truth import (
    FaultRecord,
    OutageRecord,
    RegistryRecord,
    TruthRecorder,
    read_truth_file,
)

START = parse_start("2025-03-03T08:00:00+08:00")


def demo_with_faults() -> Scenario:
    """The demo scenario plus a few scheduled faults, served from one OPC UA server."""
    demo = load_scenario("demo")
    faults = [
        {"machine": "CNC-02", "kind": "clock_jump", "at_s": 4, "seconds": 5},
        {"machine": "WSH-10", "kind": "malformed", "at_s": 2, "seconds": 3, "every_s": 8},
        {"machine": "LEG-09", "kind": "bad_status", "at_s": 6, "seconds": 2},
        {"machine": "IMM-08", "kind": "alarm_storm", "at_s": 1, "seconds": 2},
    ]
    data = demo.model_dump(mode="json")
    data["faults"] = faults
    data["simulation"] = {"opcua_layout": "fleet"}
    return Scenario.model_validate(data)


async def run_once(scenario: Scenario, path: Path, mqtt_url: str, prefix: str) -> None:
    with TruthRecorder(path) as truth:
        async with run_factory(
            scenario,
            truth=truth,
            mqtt_url=mqtt_url,
            topic_prefix=prefix,
            speed=40,
            start_ms=START,
            until_s=20,
        ) as factory:
            await asyncio.wait_for(factory.finished.wait(), 30)


async def test_same_seed_same_truth_file_live_and_offline(
    tmp_path: Path, mosquitto: MosquittoProcess, unique: str
) -> None:
    scenario = demo_with_faults()
    first, second, offline = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    await run_once(scenario, first, mosquitto.url, f"a{unique}")
    await run_once(scenario, second, mosquitto.url, f"b{unique}")
    with TruthRecorder(offline) as truth:
        simulate(scenario, START, 20, truth=truth)
    text = first.read_bytes()
    assert text == second.read_bytes()
    assert text == offline.read_bytes()  # the live factory wrote exactly the simulated truth
    records = read_truth_file(first)
    assert {r.machine for r in records if not isinstance(r, OutageRecord)} == {
        m.code for _, _, m in scenario.machines() if m.protocol != "none"
    }
    assert min(r.ts_ms for r in records if not isinstance(r, FaultRecord | OutageRecord)) == START
    faults = [
        (r.machine, r.fault, r.start_ms - START) for r in records if isinstance(r, FaultRecord)
    ]
    assert faults == [
        ("IMM-08", "alarm_storm", 1000),
        ("WSH-10", "malformed", 2000),
        ("CNC-02", "clock_jump", 4000),
        ("LEG-09", "bad_status", 6000),
        ("WSH-10", "malformed", 10_000),
        ("WSH-10", "malformed", 18_000),
    ]
    other_seed = simulate(scenario, START, 20, seed=8)
    assert other_seed.records() != simulate(scenario, START, 20).records()


async def test_time_runs_faster_and_timestamps_are_simulated() -> None:
    scenario = load_scenario("demo")
    async with run_factory(
        scenario, protocols=frozenset({"opcua"}), speed=30, start_ms=START, layout="fleet"
    ) as factory:
        wall0 = time.time()
        await asyncio.sleep(1.0)  # a second at least; more while a busy machine slows it down
        while factory.clock.now_ms() < START + 12_000 and time.time() - wall0 < 30:
            await asyncio.sleep(0.1)
        now, wall = factory.clock.now_ms(), time.time()
        # 30 simulated s per wall second (100 simulated ms of slack for rounding to whole ms),
        # less what the simulator slowed down to keep up (a busy machine), and never past the
        # change it is about to play
        ran = 30 * 1000 * (wall - wall0)
        free = factory.clock.line.free_at(wall) - START
        assert ran - 30_000 * factory.clock.slowed_s - 100 <= free <= ran + 30_000
        assert now - START <= free
        latest = max(r.ts_ms for r in factory.truth.values())
        assert START + 10_000 < latest <= now  # truth carries simulated time
    clock = SimClock(START, 60, wall0=100.0)
    assert clock.wall_at(START + 60_000) == 101.0


def test_catching_up_clock_replays_the_past_then_keeps_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = [1_700_000_000.0]
    monkeypatch.setattr("plantwire_sim.clock.time.time", lambda: wall[0])
    start = round(wall[0] * 1000) - 3_600_000  # an hour ago, replayed at 61x: 60 s to catch up
    plain = SimClock(start, 61, wall0=wall[0])
    caught = SimClock(start, 61, wall0=wall[0], catch_up=True)
    assert caught.catch_up and not SimClock(start + 7_200_000, 61, wall[0], True).catch_up
    wall[0] += 30
    assert caught.now_ms() == plain.now_ms() == start + 30 * 61_000
    wall[0] += 40  # 10 s after catching up
    assert plain.now_ms() == start + 70 * 61_000  # runs into the future
    assert caught.now_ms() == round(wall[0] * 1000)  # keeps pace with the wall clock
    for sim_ms in (start + 61_000, start + 3_600_000, start + 3_900_000):
        assert caught.wall_at(sim_ms) >= plain.wall_at(sim_ms)
    assert caught.wall_at(start + 3_900_000) == (start + 3_900_000) / 1000
    assert caught.wall_at(start + 61_000) == plain.wall_at(start + 61_000) == 1_700_000_001.0


async def test_control_port_and_cli_inject_faults() -> None:
    scenario = load_scenario("demo")
    async with run_factory(
        scenario, protocols=frozenset({"opcua", "modbus"}), layout="fleet"
    ) as factory:
        server = await serve_control(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            status = await request("127.0.0.1", port, {"op": "status"})
            assert status["ok"] and status["speed"] == 1.0
            clock = status["clock"]  # enough for a gateway elsewhere to keep the same time
            twin = SimClock.from_state(clock)
            assert abs(twin.now_ms() - factory.clock.now_ms()) < 1000
            assert status["machines"]["LEG-09"]["protocol"] == "modbus"
            assert "malformed" not in status["machines"]["LEG-09"]["applicable"]
            refused = await request(
                "127.0.0.1", port, {"op": "fault", "machine": "LEG-09", "fault": "malformed"}
            )
            assert refused == {
                "ok": False,
                "error": "fault malformed does not apply to LEG-09 (modbus); it applies to mqtt",
            }
            unknown = await request(
                "127.0.0.1", port, {"op": "fault", "machine": "NOPE", "fault": "freeze"}
            )
            assert not unknown["ok"] and "NOPE" in unknown["error"]
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "plantwire_sim.cli",
                "sim",
                "fault",
                "CNC-01",
                "freeze",
                "--seconds",
                "30",
                "--control",
                f"127.0.0.1:{port}",
                stdout=subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(cli.communicate(), 30)
            assert cli.returncode == 0, out
            answer = json.loads(out)
            assert answer["ok"] and answer["fault"]["machine"] == "CNC-01"
            await asyncio.sleep(0.1)
            status = await request("127.0.0.1", port, {"op": "status"})
            assert status["machines"]["CNC-01"]["faults"] == ["freeze"]
        finally:
            server.close()
            await server.wait_closed()
        (record,) = factory.truth.faults()
        assert (record.machine, record.fault, record.origin) == ("CNC-01", "freeze", "control")
        assert record.end_ms - record.start_ms == 30_000


async def test_the_chain_scenario_starts_every_simulator(
    mosquitto: MosquittoProcess, unique: str
) -> None:
    scenario = load_scenario("chain")
    async with run_factory(
        scenario,
        mqtt_url=mosquitto.url,
        topic_prefix=f"c{unique}",
        truth=TruthRecorder(values=False),
        speed=60,
        start_ms=parse_start("2025-03-03T09:00:00+08:00"),
    ) as factory:
        served = {m.code for _, _, m in scenario.machines() if m.protocol != "none"}
        assert set(factory.players) == served and len(served) >= 150
        assert len(factory.hosts) == 7  # one OPC UA server per site
        assert len(factory.modbus) == 15 and len(factory.mqtt_topics) == 42
        await asyncio.sleep(1.0)
        assert {s.machine for s in factory.truth.states()} == served
        assert not factory.failures()


async def test_a_simulator_that_falls_behind_slows_its_clock_down(tmp_path: Path) -> None:
    """Blocked for half a wall second (50 simulated seconds at 100x), the simulator neither
    lets its clock run past the changes it has not played nor jumps over them afterwards:
    simulated time slows down, and a gateway following the published clock sees the same."""
    scenario = load_scenario("demo")
    async with run_factory(
        scenario, protocols=frozenset({"opcua"}), speed=100, start_ms=START, layout="fleet",
        clock_file=tmp_path / "clock",
    ) as factory:  # fmt: skip
        follower = FollowedClock(tmp_path / "clock")
        await asyncio.sleep(0.3)
        clock = factory.clock
        before, played = clock.now_ms(), factory._last_ms
        time.sleep(0.5)  # noqa: ASYNC251 - the point: a scheduler that cannot run
        held = clock.now_ms()
        # the demo's CNCs change a value every simulated second while executing
        assert held - played <= 1_000 < 50_000
        assert follower.now_ms() == held
        await asyncio.sleep(0.3)  # the scheduler plays what was due, late, and slows down
        assert clock.slowed_s >= 0.4
        after = clock.now_ms()
        assert after - held <= 100 * 1000 * 0.35 + 1_000  # no jump over the 50 s it missed
        assert max(r.ts_ms for r in factory.truth.values()) <= after + 1_000
        assert after <= follower.now_ms() <= clock.now_ms()
        assert before <= held
        follower.close()


async def test_registry_changes_at_local_times_are_made_then_and_ground_truth_follows() -> None:
    """Registry changes given ``at`` a local time of their machine's site (Asia/Shanghai; the
    run starts Monday 2025-03-03 08:00 there): a daily time (08:00:05: the first one at or
    after the start, 5 s in), a local date and time (12 s in), one dated before the start (in
    force from the start), one daily on Tuesdays only (next day: not within the run) beside
    one given ``at_s`` (8 s). Key processes of the demo: OP10-OP60, OP110, OP120 (8); NC
    declared at the start: CNC-01 .. CNC-04 and IMM-07."""
    data = load_scenario("demo").model_dump(mode="json")
    data["registry_changes"] = [
        {"machine": "CNC-01", "declared_nc": False, "at": "08:00:05"},
        {"machine": "CNC-02", "declared_nc": False, "at": "2025-03-03T08:00:12"},
        {"machine": "CNC-04", "declared_nc": False, "at": "2025-03-01T00:00"},
        {"machine": "CNC-03", "declared_nc": False, "at": "08:00", "days": [1]},
        {"machine": "CNC-06", "declared_nc": False, "at_s": 8},
    ]
    data["simulation"] = {"opcua_layout": "fleet"}
    scenario = Scenario.model_validate(data)
    async with run_factory(
        scenario, protocols=frozenset({"opcua"}), speed=40, start_ms=START, until_s=20
    ) as factory:
        await asyncio.wait_for(factory.finished.wait(), 60)
        records = list(factory.truth.records())
    made = sorted(
        (r.ts_ms - START, r.machine, r.declared_nc)
        for r in records
        if isinstance(r, RegistryRecord)
    )
    assert made == [
        (0, "CNC-04", False),
        (5_000, "CNC-01", False),
        (8_000, "CNC-06", False),
        (12_000, "CNC-02", False),
    ]
    # the registry document as of a time into the run has the changes made by then
    as_of = scenario.registry(after_s=6, t0_ms=START)
    declared = {
        m["code"]: m["declared_nc"]
        for e in as_of["enterprises"]
        for s in e["sites"]
        for m in s["equipment"]
    }
    assert [declared[c] for c in ("CNC-01", "CNC-02", "CNC-03", "CNC-04")] == [
        False,
        True,
        True,
        False,
    ]
    # ground truth: 4 of 8 key processes declared NC before 5 s (CNC-04 re-declared at the
    # start), 3 from 5 s, 2 from 12 s
    for (a, b), nc in {(0, 4_000): 4, (6_000, 11_000): 3, (13_000, 20_000): 2}.items():
        truth = expected(scenario, records, START + a, START + b)["HXP"]
        assert truth.rate("nc_rate_declared") == (nc, 8), (a, b)
