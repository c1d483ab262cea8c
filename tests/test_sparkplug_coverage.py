"""Every Sparkplug 3.0 requirement id is in docs/sparkplug.md's coverage table: one that applies
to plantwire's edge node or host names the tests that prove it, and each of them does (by its
name, ``test_`` + the id, or a ``@pytest.mark.sparkplug(...)`` marker); one that does not apply
says why. An applicable id without a test fails here, as does an id no test could mean."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDS = ROOT / "tests" / "sparkplug_ids.txt"
# the full list (statements with ids) beside a checkout, when there is one
SPECS = [p / "shared" / "spec" / "sparkplug-3.0-requirements.txt" for p in ROOT.parents[:2]]
DOC = ROOT / "docs" / "sparkplug.md"
ROW = re.compile(r"^\| `(tck-id-[^`]+)` \|([^|]+)\|([^|]*)\|([^|]*)\|$")
NOT_APPLICABLE = "—"


def spec_ids() -> list[str]:
    """The ids of the specification's list, as the repository keeps them."""
    lines = IDS.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.startswith("tck-id-")]


def test_the_kept_ids_are_the_specification_list() -> None:
    for spec in SPECS:
        if spec.is_file():
            lines = spec.read_text(encoding="utf-8").splitlines()
            assert spec_ids() == [x.split(":", 1)[0] for x in lines if x.startswith("tck-id-")]


def doc_rows() -> dict[str, tuple[str, str, str]]:
    """id -> (applies to, how or why not, tests) from the coverage table."""
    rows: dict[str, tuple[str, str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line.strip())
        if match:
            ident, role, how, tests = (g.strip() for g in match.groups())
            assert ident not in rows, f"{ident} twice in {DOC.name}"
            rows[ident] = (role, how, tests)
    return rows


def _marker_ids(decorator: ast.expr) -> list[str]:
    if not isinstance(decorator, ast.Call):
        return []
    name = ast.unparse(decorator.func)
    if name not in ("pytest.mark.sparkplug", "mark.sparkplug"):
        return []
    return [
        a.value for a in decorator.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
    ]


def carriers(known: set[str]) -> dict[str, set[str]]:
    """id -> tests ('path::name') carrying it, by name or marker; unknown ids under ''."""
    by_name = {"test_" + i.replace("-", "_").lower(): i for i in known}
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not node.name.startswith("test_"):
                continue
            where = f"{path.relative_to(ROOT).as_posix()}::{node.name}"
            ids = [i for d in node.decorator_list for i in _marker_ids(d)]
            if node.name.lower() in by_name:
                ids.append(by_name[node.name.lower()])
            for ident in ids:
                found.setdefault(ident if ident in known else "", set()).add(f"{where} ({ident})")
    return found


def test_every_requirement_id_is_in_the_coverage_table_once() -> None:
    ids = spec_ids()
    assert len(ids) == len(set(ids))
    rows = doc_rows()
    assert sorted(set(ids) - set(rows)) == [], "requirement ids missing from docs/sparkplug.md"
    assert sorted(set(rows) - set(ids)) == [], "ids in docs/sparkplug.md that are not in the list"


def test_every_applicable_requirement_has_a_test_that_names_it() -> None:
    rows = doc_rows()
    carried = carriers(set(spec_ids()))
    assert "" not in carried, f"tests name ids the list does not have: {sorted(carried[''])}"
    untested = []
    for ident, (role, how, tests) in rows.items():
        if role == NOT_APPLICABLE:
            assert how, f"{ident}: not applicable, but no reason given"
            continue
        assert role in ("edge", "host", "edge, host"), f"{ident}: applies to {role!r}?"
        have = {t.split(" ")[0].split("::")[1] for t in carried.get(ident, set())}
        if not have:
            untested.append(ident)
            continue
        named = set(re.findall(r"`(test_[a-z0-9_]+)`", tests))
        assert named, f"{ident}: the table names no test"
        assert named <= have, f"{ident}: {sorted(named - have)} do not carry the id"
    assert untested == [], "applicable requirements without a test"
