"""The equipment sheet: an enterprise's equipment as CSV, one machine a row, for spreadsheet
users (``docs/registry.md``). Reading a sheet applies it to the enterprise's document: every
row is checked, and the whole result validated, before anything can be written; each problem
names its row (the header is row 1) and field."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from plantwire_bus.state import ControlType
from plantwire_platform.problems import Problems
from plantwire_platform.registry.document import (
    CODE,
    Enterprise,
    Equipment,
    Line,
    Process,
    RegistryError,
    Site,
)
from plantwire_platform.translation import Text, word

COLUMNS = (
    "site",
    "line",
    "code",
    "name",
    "control_type",
    "declared_nc",
    "processes",
    "ideal_cycle_s",
)
"""The sheet's columns; ``processes`` lists the codes of the line's process steps the machine
performs, separated by spaces or ``;``; ``ideal_cycle_s`` may stay empty."""
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n"}
_CODE = re.compile(CODE)
MAX_ROWS = 20_000


@dataclass(frozen=True, slots=True)
class Problem:
    row: int
    field: str
    message: Text | Problems

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.message}"


class SheetError(RegistryError):
    """A sheet that cannot be applied: every problem found, by row and field."""

    def __init__(self, found: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in found))
        self.problems = found

    def worded(self, language: str) -> list[dict[str, Any]]:
        """Every problem in ``language``, as the API answers them: row, field, message."""
        return [
            {"row": p.row, "field": p.field, "message": word(language, p.message)}
            for p in self.problems
        ]


def equipment_sheet(ent: Enterprise) -> str:
    """The enterprise's equipment as a sheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for site in ent.sites:
        performs: dict[str, list[str]] = {}
        for line in site.lines:
            for p in line.processes:
                for code in p.equipment:
                    performs.setdefault(code, []).append(p.code)
        for q in site.equipment:
            writer.writerow(
                [
                    site.code,
                    q.line,
                    q.code,
                    q.name,
                    q.control_type.value,
                    "true" if q.declared_nc else "false",
                    " ".join(performs.get(q.code, [])),
                    "" if q.ideal_cycle_s is None else f"{q.ideal_cycle_s:g}",
                ]
            )
    return out.getvalue()


def apply_sheet(ent: Enterprise, text: str) -> Enterprise:
    """``ent`` with the sheet's machines added or changed (others stay as they are), and each
    sheet machine performing exactly the processes its row lists. Raises :class:`SheetError`
    with every problem; nothing is half applied."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [h.strip() for h in rows[0]] != list(COLUMNS):
        raise SheetError([Problem(1, "header", Text("sheet.header", columns=",".join(COLUMNS)))])
    if len(rows) - 1 > MAX_ROWS:
        raise SheetError([Problem(MAX_ROWS + 2, "row", Text("sheet.rows", most=MAX_ROWS))])
    sites = {s.code: s for s in ent.sites}
    found: list[Problem] = []
    machines: dict[str, dict[str, tuple[Equipment, list[str]]]] = {}
    first: dict[tuple[str, str], int] = {}  # the row each machine of a site is on
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        got = _row(number, row, sites, found)
        if got is None:
            continue
        site, machine, performs = got
        mine = machines.setdefault(site, {})
        if machine.code in mine:
            row_of = first[(site, machine.code)]
            found.append(
                Problem(number, "code", Text("sheet.repeated", code=machine.code, row=row_of))
            )
            continue
        mine[machine.code] = (machine, performs)
        first[(site, machine.code)] = number
    if found:
        raise SheetError(found)
    try:
        return Enterprise.model_validate(
            ent.model_copy(
                update={"sites": tuple(_site(s, machines.get(s.code, {})) for s in ent.sites)}
            ).model_dump()
        )
    except ValidationError as exc:
        raise SheetError([Problem(0, "sheet", Problems(exc))]) from None


def _row(
    number: int, row: list[str], sites: dict[str, Site], found: list[Problem]
) -> tuple[str, Equipment, list[str]] | None:
    if len(row) != len(COLUMNS):
        found.append(
            Problem(number, "row", Text("sheet.cells", cells=len(row), expected=len(COLUMNS)))
        )
        return None
    cell = dict(zip(COLUMNS, (c.strip() for c in row), strict=True))
    before = len(found)

    def bad(field: str, message: Text) -> None:
        found.append(Problem(number, field, message))

    site = sites.get(cell["site"])
    if site is None:
        listed = ", ".join(sites) if sites else Text("sheet.none")
        bad("site", Text("sheet.no_site", site=cell["site"], known=listed))
    lines = {line.code: line for line in site.lines} if site else {}
    line = lines.get(cell["line"])
    if site is not None and line is None:
        bad("line", Text("sheet.no_line", line=cell["line"], site=site.code))
    if not _CODE.match(cell["code"]):
        bad("code", Text("sheet.code", code=cell["code"]))
    if not cell["name"]:
        bad("name", Text("sheet.empty"))
    try:
        control = ControlType(cell["control_type"].upper())
    except ValueError:
        control = None
        bad("control_type", Text("sheet.control_type", value=cell["control_type"]))
    flag = cell["declared_nc"].lower()
    declared = flag in _TRUE
    if flag not in _TRUE | _FALSE:
        bad("declared_nc", Text("sheet.flag", value=cell["declared_nc"]))
    elif declared and control is ControlType.MANUAL:
        bad("declared_nc", Text("sheet.manual_nc"))
    performs = cell["processes"].replace(";", " ").split()
    known = {p.code for p in line.processes} if line else set()
    unknown = [p for p in performs if line is not None and p not in known]
    if unknown:
        bad("processes", Text("sheet.no_process", codes=", ".join(unknown), line=cell["line"]))
    cycle: float | None = None
    if cell["ideal_cycle_s"]:
        try:
            cycle = float(cell["ideal_cycle_s"])
        except ValueError:
            cycle = None
        if cycle is None or not cycle > 0 or cycle == float("inf"):
            bad("ideal_cycle_s", Text("sheet.cycle", value=cell["ideal_cycle_s"]))
    if len(found) > before or site is None or control is None:
        return None
    machine = Equipment(
        code=cell["code"],
        name=cell["name"],
        line=cell["line"],
        control_type=control,
        declared_nc=declared,
        ideal_cycle_s=cycle,
    )
    return site.code, machine, performs


def _site(site: Site, machines: dict[str, tuple[Equipment, list[str]]]) -> Site:
    if not machines:
        return site
    kept = [q for q in site.equipment if q.code not in machines]
    equipment = (*kept, *(m for m, _ in machines.values()))

    def process(line: Line, p: Process) -> Process:
        others = [code for code in p.equipment if code not in machines]
        mine = [c for c, (m, does) in machines.items() if m.line == line.code and p.code in does]
        return p.model_copy(update={"equipment": tuple(sorted({*others, *mine}))})

    lines = tuple(
        line.model_copy(update={"processes": tuple(process(line, p) for p in line.processes)})
        for line in site.lines
    )
    return site.model_copy(update={"equipment": equipment, "lines": lines})
