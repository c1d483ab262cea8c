"""``plantwire sim`` commands in a subprocess: list, run with a duration and a truth file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
