"""Project invariants: the stdlib's platform module wins, paho lives in one module, every
subcommand has help, no two migrations share a number, every package is in the distribution."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from plantwire.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_stdlib_platform_is_not_shadowed() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib
    # and with the repository root first on sys.path, as `python -m` from the root does
    code = "import platform, uuid; print(platform.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert Path(out.strip()).resolve().parent == stdlib


def test_paho_is_imported_in_exactly_one_module() -> None:
    importers = [
        p.relative_to(ROOT).as_posix()
        for folder in ("broker", "simulators", "edge", "platform", "tests", "bench")
        for p in (ROOT / folder).rglob("*.py")
        if re.search(r"^\s*(import|from)\s+paho\b", p.read_text(), re.MULTILINE)
    ]
    assert importers == ["broker/plantwire_bus/mqtt.py"]


def _commands() -> list[list[str]]:
    parser = build_parser()
    found: list[list[str]] = []

    def walk(p: object, prefix: list[str]) -> None:
        for action in getattr(p, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(parser, [])
    return found


def test_expected_subcommands_exist() -> None:
    commands = {" ".join(c) for c in _commands()}
    assert {
        "demo",
        "sim",
        "edge",
        "platform",
        "platform serve",
        "platform ingest",
        "platform migrate",
        "edge run",
        "edge check",
        "sim run",
        "sim list",
    } <= commands


@pytest.mark.parametrize("command", [[], *_commands()], ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plantwire.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: plantwire" in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_migration_numbers_are_unique() -> None:
    # two branches that took the same number would break every migration
    from plantwire_platform.database import MIGRATIONS_DIR

    numbers = [p.name[:4] for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql")]
    assert len(numbers) == len(set(numbers)), sorted(numbers)


def test_every_package_is_in_the_distribution() -> None:
    # an editable install finds any package; a wheel holds only those pyproject.toml lists
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found - listed == set(), "packages missing from [tool.setuptools] packages"
    dirs = tool["package-dir"]
    missing = [
        p for p in listed if not (ROOT / dirs[p.split(".")[0]]).joinpath(*p.split(".")[1:]).is_dir()
    ]
    assert missing == [], "packages listed but not in the tree (data folders need no __init__)"


def test_every_database_connection_comes_from_the_connections_module() -> None:
    # connections.py puts every session in UTC (PGTZ or a server elsewhere would otherwise
    # spell and cut the answers' times in their zone); the synchronous connections of
    # services.py and timescaledb.py create, drop and probe databases and read no time
    opened = re.compile(r"\b(AsyncConnection\.connect|psycopg\.connect|AsyncConnectionPool)\(")
    makers = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "platform").rglob("*.py")
        if opened.search(p.read_text())
    )
    assert makers == [
        "platform/plantwire_platform/connections.py",
        "platform/plantwire_platform/services.py",
        "platform/plantwire_platform/timescaledb.py",
    ]
