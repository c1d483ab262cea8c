"""The golden tests on a busy machine (issue 14): both cores kept busy by two CPU-bound
processes this module starts itself, each golden run five times in a row, tolerances as in
:mod:`tests.golden.test_golden`.

A simulator that falls behind slows its clock down instead of stamping values on another time
line (:mod:`plantwire_sim.clock`), and so does one whose Modbus machines a starved gateway
polls late (:mod:`plantwire_sim.polls`); the gateways follow that clock. The runs take longer
instead (a demo hour 3-4 minutes rather than 30 s), so each may take up to ``RUN_S``; the
group is marked ``load``: left out of the main suite; ``.ci/run`` runs it after the main suite
with one round each (``PLANTWIRE_LOAD_ROUNDS=1``, about 10 minutes); the five rounds the issue
asks for by hand (30-75 minutes: ``.venv/bin/pytest -n 0 -m load``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.golden.test_golden import chain_shift_change_at_5x, demo_hour_at_150x

RUN_S = 1200  # wall seconds one slowed-down run may take on a busy machine
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.load,
    pytest.mark.backends("postgres"),
    pytest.mark.timeout(RUN_S),
]

ROUNDS = range(1, int(os.environ.get("PLANTWIRE_LOAD_ROUNDS", "5")) + 1)
BUSY = "import os\np = os.getppid()\nwhile os.getppid() == p:\n    for _ in range(10**7): pass"
"""CPU-bound until the test process is gone: a run killed on its timeout (no ``finally``)
leaves no busy process behind to load the machine for whoever runs next."""


@pytest.fixture(scope="module")
def busy_cores() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One CPU-bound process per core (at least two), for the whole module."""
    processes = [
        subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(max(2, os.cpu_count() or 2))
    ]
    try:
        yield processes
    finally:
        for p in processes:
            p.kill()
        for p in processes:
            p.wait(10)


@pytest.mark.parametrize("round_", ROUNDS)
async def test_demo_hour_at_150x_on_busy_cores(
    busy_cores: list[subprocess.Popen[bytes]],
    round_: int,
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
    unique: str,
) -> None:
    assert all(p.poll() is None for p in busy_cores)  # still busy
    await demo_hour_at_150x(database_url, mqtt_url, tmp_path, unique)


@pytest.mark.parametrize("round_", ROUNDS)
async def test_chain_shift_change_at_5x_on_busy_cores(
    busy_cores: list[subprocess.Popen[bytes]],
    round_: int,
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
    unique: str,
) -> None:
    assert all(p.poll() is None for p in busy_cores)  # still busy
    await chain_shift_change_at_5x(database_url, mqtt_url, tmp_path, unique)
