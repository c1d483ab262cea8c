"""The README's "Running against your own PostgreSQL and broker" and "The simulated factory"
sections, run as written.

Every shell block of a section is run in order, in a fresh folder, against a database that
does not exist yet (``migrate`` creates it) and a private Mosquitto; then the gateway config
example is checked. What differs from a user's terminal, and only that:

* ``./run plantwire …`` is ``plantwire …`` in this environment (``./run`` only adds the
  install), ``./run demo`` too;
* ``export DATABASE_URL=…`` and ``export MQTT_URL=…`` set this test's database and broker;
  ``export PLANTWIRE_AUDIT_KEY=…`` and ``PLANTWIRE_TOKEN_SECRET=…`` get random keys, as
  ``openssl rand`` would give;
* ``curl`` runs as written against the API's port, with ``PASSWORD`` the password a command
  printed before (``password=…``) and ``TOKEN`` the ``access_token`` of the last answer that
  had one; every answer must be JSON without an ``error``;
* free ports replace the defaults a user would use: the API's ``8000``, the simulators' first
  port ``4840`` (``sim run``, ``sim gateway-config`` and the discover URL get the same one),
  the control port ``4999``, and the demo gets ``--port`` and ``--data-dir``;
* a command marked "keeps running" is started, waited for until it is ready, and left running
  (the demo alone is stopped before the next block, as a user would before going on); at the
  end each is stopped with Ctrl-C and must exit 0.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from plantwire_bus.mosquitto import MosquittoProcess, free_port
from plantwire_platform import services

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = "## Running against your own PostgreSQL and broker"
SIMULATOR = "## The simulated factory"
LONG_RUNNING = ("demo", "platform ingest", "platform serve", "sim run", "edge run")

pytestmark = pytest.mark.e2e


def section(readme: str, title: str) -> str:
    start = readme.index(title)
    end = readme.find("\n## ", start + len(title))
    return readme[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """The commands of a shell block: continued lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def test_the_sections_have_what_this_test_runs() -> None:
    text = section((ROOT / "README.md").read_text(), COMPONENTS)
    shell = [c for b in blocks(text, "sh") for c in commands(b) if c]
    assert len(shell) >= 10
    assert any(
        c[:2] == ["export", "DATABASE_URL=postgresql://plantwire:secret@dbhost:5432/plantwire"]
        for c in shell
    )
    assert [c for c in shell if c[0] not in ("export", "./run", "curl")] == []
    assert any(c[:5] == ["./run", "plantwire", "platform", "admin", "create"] for c in shell)
    assert sum(c[0] == "curl" for c in shell) >= 2  # sign in, then ask with the token
    assert len(blocks(text, "toml")) >= 1
    sim = section((ROOT / "README.md").read_text(), SIMULATOR)
    assert next(c[:4] for b in blocks(sim, "sh") for c in commands(b) if c) == [
        "./run",
        "plantwire",
        "sim",
        "run",
    ]


def free_base_port(count: int, salt: str) -> int:
    """A first port with ``count`` free ports after it, below the range the system hands out
    to outgoing connections (which would otherwise take ports of the run meanwhile); ``salt``
    keeps tests of one run apart."""
    rng = random.Random(f"{salt}-{uuid.uuid4()}")
    for _ in range(200):
        base = rng.randrange(10_000, 32_000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no run of free ports")


@dataclass
class Walk:
    cwd: Path
    env: dict[str, str]
    api_port: int
    sim_port: int
    control_port: int
    running: list[tuple[list[str], subprocess.Popen[bytes], Path]] = field(default_factory=list)
    said: dict[str, str] = field(default_factory=dict)  # password, token
    answers: list[Any] = field(default_factory=list)  # what curl got

    def argv(self, command: list[str]) -> list[str]:
        assert command[0] == "./run", command
        args = command[1:]
        if args[0] == "plantwire":
            args = args[1:]
        args = [a.replace("8000", str(self.api_port)) if a == "8000" else a for a in args]
        args = [a.replace(":4840/", f":{self.sim_port}/") for a in args]
        args = [re.sub(r"^(127\.0\.0\.1:)?4999$", rf"\g<1>{self.control_port}", a) for a in args]
        if args[:2] in (["sim", "run"], ["sim", "gateway-config"]):
            args += ["--base-port", str(self.sim_port)]
        if args[0] == "demo":
            args += ["--port", str(free_port()), "--data-dir", str(self.cwd / "demo-data")]
        return [sys.executable, "-m", "plantwire.cli", *args]

    def run(self, command: list[str]) -> None:
        if command[0] == "export":
            name, _, _ = command[1].partition("=")
            if name in ("PLANTWIRE_AUDIT_KEY", "PLANTWIRE_TOKEN_SECRET"):
                self.env[name] = secrets.token_hex(32)
                return
            assert name in ("DATABASE_URL", "MQTT_URL"), command
            return  # this test's own values are already set
        if command[0] == "curl":
            self.curl(command)
            return
        argv = self.argv(command)
        what = " ".join(argv[3:5]) if argv[3] != "demo" else "demo"
        if what in LONG_RUNNING:
            self.start(command, argv, what)
            return
        done = subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}\n{done.stderr}"
        for line in done.stdout.splitlines():
            if line.startswith("password="):
                self.said["PASSWORD"] = line.removeprefix("password=")

    def curl(self, command: list[str]) -> None:
        assert shutil.which("curl"), "the README uses curl: install it"
        argv = [
            a.replace("localhost:8000", f"localhost:{self.api_port}")
            .replace("PASSWORD", self.said.get("PASSWORD", "PASSWORD"))
            .replace("TOKEN", self.said.get("TOKEN", "TOKEN"))
            for a in command
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{shlex.join(command)}: {done.stderr}"
        answer = json.loads(done.stdout)
        assert not (isinstance(answer, dict) and "error" in answer), (command, answer)
        if isinstance(answer, dict) and "access_token" in answer:
            self.said["TOKEN"] = answer["access_token"]
        self.answers.append(answer)

    def start(self, command: list[str], argv: list[str], what: str) -> None:
        log = self.cwd / f"{what.replace(' ', '-')}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready: dict[str, Callable[[], bool]] = {
            "demo": lambda: "Press Ctrl-C" in log.read_text(),
            "platform ingest": lambda: " online at " in log.read_text(),
            "platform serve": lambda: _answers(self.api_port),
            "sim run": lambda: "press Ctrl-C" in log.read_text(),
            "edge run": lambda: _stored(self.env["DATABASE_URL"]) > 0,
        }
        deadline = time.monotonic() + 120
        while not ready[what]():
            assert process.poll() is None, f"{shlex.join(command)} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{shlex.join(command)}:\n{log.read_text()}"
            time.sleep(0.1)
        if what == "demo":
            self.stop(command, process, log)
        else:
            self.running.append((command, process, log))

    @staticmethod
    def stop(command: list[str], process: subprocess.Popen[bytes], log: Path) -> None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        assert code == 0, f"{shlex.join(command)} after Ctrl-C: {code}\n{log.read_text()}"

    def stop_all(self) -> None:
        for command, process, log in reversed(self.running):
            if process.poll() is None:
                self.stop(command, process, log)
        self.running.clear()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _stored(database_url: str) -> int:
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM sample_text s JOIN series x ON x.id = s.series_id"
                " WHERE x.device_id = 'CNC-01' AND x.equipment_id IS NOT NULL"
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


@pytest.fixture
def walk(tmp_path: Path, pg_admin_url: str, private_mosquitto: MosquittoProcess) -> Iterator[Walk]:
    name = f"plantwire_readme_{uuid.uuid4().hex[:10]}"  # not created: migrate does it
    env = {
        **os.environ,
        "DATABASE_URL": services.with_database(pg_admin_url, name),
        "MQTT_URL": private_mosquitto.url,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PLANTWIRE_DATA_DIR", None)
    walk = Walk(tmp_path, env, free_port(), free_base_port(64, tmp_path.name), free_port())
    try:
        yield walk
    finally:
        for _, process, _ in walk.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        services.drop_database(pg_admin_url, name)


def walk_through(walk: Walk, text: str) -> None:
    for block in blocks(text, "sh"):
        for command in commands(block):
            if command:
                walk.run(command)


def test_the_components_run_as_written(walk: Walk) -> None:
    text = section((ROOT / "README.md").read_text(), COMPONENTS)
    walk_through(walk, text)
    # signed in as the admin it made, the API lists the demo plant
    assert [e["code"] for e in walk.answers[-1]] == ["HXP"], walk.answers
    # the gateway config example is a valid config
    [example] = [b for b in blocks(text, "toml") if "group_id" in b]
    (walk.cwd / "example.toml").write_text(example)
    walk.run(["./run", "plantwire", "edge", "check", "example.toml"])
    walk.stop_all()


def test_the_simulated_factory_runs_as_written(walk: Walk) -> None:
    walk_through(walk, section((ROOT / "README.md").read_text(), SIMULATOR))
    assert (walk.cwd / "truth.jsonl").stat().st_size > 0
    walk.stop_all()
