"""Import direction: the bus imports no other package; the simulators, the edge and the
platform import only the bus; only the composition root (``plantwire``) imports them all; no
import cycle between modules, nor between the platform's sub-packages.

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = {
    "plantwire": "platform/plantwire",
    "plantwire_bus": "broker/plantwire_bus",
    "plantwire_sim": "simulators/plantwire_sim",
    "plantwire_edge": "edge/plantwire_edge",
    "plantwire_platform": "platform/plantwire_platform",
}
MAY_IMPORT = {
    "plantwire_bus": {"plantwire_bus"},
    "plantwire_sim": {"plantwire_bus", "plantwire_sim"},
    "plantwire_edge": {"plantwire_bus", "plantwire_edge"},
    "plantwire_platform": {"plantwire_bus", "plantwire_platform"},
    "plantwire": set(PACKAGES),
}
"""What each package may import; nothing may import the composition root."""

PLATFORM_ROOMS = {
    "registry": {"indicators", "translation", "problems", "connections"},
    "indicators": {"translation"},
    "ingest": {"storage", "settings", "connections"},
    "storage": {"connections"},
    "partner": {
        "indicators",
        "registry",
        "errors",
        "batching",
        "settings",
        "workers",
        "workload",
        "translation",
        "connections",
    },
    "api": {
        "accounts",
        "indicators",
        "registry",
        "gateways",
        "settings",
        "errors",
        "workload",
        "workers",
        "translation",
        "problems",
    },
    "accounts": {"partner", "errors", "settings", "command", "translation"},
    "gateways": {"command", "translation"},
    "console": {"translation"},
}
"""The platform's sub-packages and the other parts of the platform each may import (as their
docstrings say, ``connections`` where they open connections of their own); the shared
infrastructure beside them imports no sub-package but ``storage``, and only ``server``, ``cli``
and ``services`` put the rooms together."""


def module_name(package: str, folder: Path, path: Path) -> str:
    parts = [package, *path.relative_to(folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Every module name an AST imports, resolved against the module ``name``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def graph(root: Path, packages: Mapping[str, str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name that is an attribute of a module, as
    in ``from pkg import function``, counts as the module)."""
    sources: dict[str, tuple[Path, bool]] = {}
    for package, folder in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            sources[module_name(package, root / folder, path)] = (path, path.name == "__init__.py")
    edges: dict[str, set[str]] = {}
    for name, (path, is_package) in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = set()
        for target in imported(tree, name, is_package):
            while target and target not in sources:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def violations(edges: Mapping[str, set[str]], may_import: Mapping[str, set[str]]) -> list[str]:
    out = []
    for module, targets in sorted(edges.items()):
        package = module.split(".")[0]
        for target in sorted(targets):
            if target.split(".")[0] not in may_import[package]:
                out.append(f"{module} imports {target}")
    return out


def room(module: str) -> str | None:
    """The platform sub-package (or top-level module) a platform module belongs to."""
    parts = module.split(".")
    if parts[0] != "plantwire_platform" or len(parts) < 2:
        return None
    return parts[1]


def room_violations(edges: Mapping[str, set[str]]) -> list[str]:
    out = []
    for module, targets in sorted(edges.items()):
        source = room(module)
        if source not in PLATFORM_ROOMS:
            continue
        allowed = PLATFORM_ROOMS[source] | {source}
        for target in sorted(targets):
            other = room(target)
            if other is not None and other not in allowed:
                out.append(f"{module} imports {target}")
    return out


def room_graph(edges: Mapping[str, set[str]]) -> dict[str, set[str]]:
    coarse: dict[str, set[str]] = {}
    for module, targets in edges.items():
        source = room(module)
        if source is None:
            continue
        coarse.setdefault(source, set()).update(
            r for r in map(room, targets) if r is not None and r != source
        )
    return coarse


# -- the project -------------------------------------------------------------------------------

EDGES = graph(ROOT, PACKAGES)


def test_the_graph_sees_the_project() -> None:
    assert len(EDGES) > 100
    assert "plantwire_bus.payload" in EDGES["plantwire_edge.ddata"]
    assert "plantwire_platform.ingest.host" in EDGES["plantwire_platform.ingest.intake"]


def test_packages_import_only_what_they_may() -> None:
    assert violations(EDGES, MAY_IMPORT) == []


def test_nothing_imports_the_composition_root() -> None:
    assert [
        m
        for m, ts in EDGES.items()
        if m.split(".")[0] != "plantwire" and any(t.split(".")[0] == "plantwire" for t in ts)
    ] == []


def test_no_module_import_cycles() -> None:
    assert cycles(EDGES) == []


def test_platform_rooms_import_what_their_docstrings_say() -> None:
    assert room_violations(EDGES) == []
    assert cycles(room_graph(EDGES)) == []


# -- the checker on a tree made to fail --------------------------------------------------------


def test_the_checker_finds_a_forbidden_import_and_cycles(tmp_path: Path) -> None:
    files = {
        "bus/plantwire_bus/__init__.py": "",
        "bus/plantwire_bus/wire.py": "from plantwire_edge.node import Node\n",
        "edge/plantwire_edge/__init__.py": "",
        "edge/plantwire_edge/node.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from plantwire_edge.feed import Feed\n"
        ),
        "edge/plantwire_edge/feed.py": "from . import node\n",
        "edge/plantwire_edge/lazy.py": (
            "import importlib\ndef f():\n    importlib.import_module('plantwire_bus.wire')\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = graph(
        tmp_path, {"plantwire_bus": "bus/plantwire_bus", "plantwire_edge": "edge/plantwire_edge"}
    )
    assert edges["plantwire_edge.lazy"] == {"plantwire_bus.wire"}
    assert violations(edges, MAY_IMPORT) == ["plantwire_bus.wire imports plantwire_edge.node"]
    assert cycles(edges) == [["plantwire_edge.feed", "plantwire_edge.node"]]
