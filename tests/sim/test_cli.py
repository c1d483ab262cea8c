"""``plantwire sim`` commands in a subprocess: list, run with a duration and a truth file."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from plantwire_bus.timeline import FollowedClock
from plantwire_sim.cli import REPLAY_DONE
from plantwire_sim.clock import parse_start
from plantwire_sim.scenario import load_scenario
from plantwire_sim.scorecard import simulate
from plantwire_sim.truth import TruthRecorder


def sim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plantwire_sim.cli", "sim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_list_names_every_builtin_scenario() -> None:
    result = sim("list")
    assert result.returncode == 0, result.stderr
    assert "demo: 1 enterprises, 12 machines (7 opcua, 1 modbus, 3 mqtt)" in result.stdout
    assert "chain: 7 enterprises, 157 machines" in result.stdout


def test_run_plays_a_duration_and_writes_the_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    start = "2025-03-03T08:00:00+08:00"
    result = sim(
        "run",
        "--scenario",
        "demo",
        "--protocols",
        "opcua,modbus",
        "--base-port",
        "0",
        "--layout",
        "fleet",
        "--speed",
        "50",
        "--start",
        start,
        "--duration",
        "10",
        "--truth",
        str(truth),
    )
    assert result.returncode == 0, result.stderr
    assert "played 10 simulated seconds" in result.stdout
    assert "LEG-09  modbus://127.0.0.1:" in result.stdout
    expected = tmp_path / "expected.jsonl"
    with TruthRecorder(expected) as recorder:
        simulate(
            load_scenario("demo"),
            parse_start(start),
            10,
            truth=recorder,
            protocols=frozenset({"opcua", "modbus"}),
        )
    assert truth.read_bytes() == expected.read_bytes()


def test_bad_input_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nenterprises = []\n[simulation]\nopcua_layout = "rack"\n')
    result = sim("run", "--scenario", str(bad))
    assert result.returncode == 2
    assert "opcua_layout" in result.stderr
    result = sim("run", "--scenario", "demo", "--start", "yesterday")
    assert result.returncode == 2 and "--start" in result.stderr
    result = sim("run", "--scenario", "demo", "--hold-start")  # nowhere to say 'go'
    assert result.returncode == 2 and "--hold-start needs --control" in result.stderr


def test_a_replay_says_when_it_runs_live_and_publishes_its_clock(tmp_path: Path) -> None:
    """Twenty simulated seconds before now replayed at 100x reach the wall clock within a
    fraction of a second: ``sim run`` says so (the demo shows that line), and the clock file
    it published gives the time a gateway stamps with: now, not in the future."""
    start = datetime.fromtimestamp(time.time() - 20, UTC).isoformat()
    clock = tmp_path / "clock"
    process = subprocess.Popen(
        [sys.executable, "-m", "plantwire_sim.cli", "sim", "run", "--scenario", "demo",
         "--protocols", "opcua", "--base-port", "0", "--layout", "fleet", "--speed", "100",
         "--start", start, "--catch-up", "--clock-file", str(clock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while not line.startswith(REPLAY_DONE):
            assert time.monotonic() < deadline and process.poll() is None, "no replay done"
            line = process.stdout.readline()
        assert "simulated time reached the wall clock" in line and "running live" in line
        followed = FollowedClock(clock)
        assert followed.line.catch_up and followed.speed == 100
        now = followed.now_ms()
        assert time.time() * 1000 - 1_000 <= now <= time.time() * 1000 + 1  # live: now
        followed.close()
    finally:
        process.terminate()
        process.wait(30)
