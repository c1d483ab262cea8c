"""The equipment sheet (CSV): applied whole or not at all, every problem named by row and
field; through the API on a real PostgreSQL a broken sheet writes nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from plantwire_platform.registry.document import Enterprise, Line, Process, Site
from plantwire_platform.registry.sheet import COLUMNS, SheetError, apply_sheet, equipment_sheet
from plantwire_platform.registry.store import import_enterprise
from plantwire_platform.server import create_app
from tests.platform.identities import person, secured

KINDS = ("CNC", "PLC", "ROBOT", "MANUAL", "DCS")
BROKEN = {
    57: ("control_type", "CNCX"),
    230: ("declared_nc", "maybe"),
    411: ("line", "L9"),
}
"""Sheet rows (the header is row 1) spoiled, with the field and the bad value."""


def base() -> Enterprise:
    lines = tuple(
        Line(
            code=f"L{n}",
            name=f"Line {n}",
            processes=tuple(
                Process(code=f"OP{n}{k}", name=f"Step {k}", is_key=k < 2, key_reason="tolerance")
                for k in range(4)
            ),
        )
        for n in (1, 2)
    )
    site = Site(code="S1", name="Plant", edge_node="S1-GW", timezone="UTC", lines=lines)
    return Enterprise(code="MASS", uscc="91110000000000777X", name="Mass Co.", sites=(site,))


def sheet(machines: int, broken: dict[int, tuple[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in range(machines):
        row_number = i + 2
        kind = KINDS[i % len(KINDS)]
        line = f"L{1 + i % 2}"
        cell = {
            "site": "S1",
            "line": line,
            "code": f"M{i:04d}",
            "name": f"Machine {i}",
            "control_type": kind,
            "declared_nc": "true" if kind in ("CNC", "ROBOT") else "false",
            "processes": f"OP{line[1]}{i % 4}",
            "ideal_cycle_s": "" if i % 3 else "12.5",
        }
        if row_number in broken:
            field, value = broken[row_number]
            cell[field] = value
        writer.writerow([cell[c] for c in COLUMNS])
    return out.getvalue()


def test_a_sheet_applies_and_comes_back_the_same() -> None:
    text = sheet(40, {})
    doc = apply_sheet(base(), text)
    [site] = doc.sites
    assert len(site.equipment) == 40
    performers = {p.code: p.equipment for line in site.lines for p in line.processes}
    assert performers["OP10"] == tuple(f"M{i:04d}" for i in range(40) if i % 2 == 0 and i % 4 == 0)
    assert equipment_sheet(doc) == text  # export of what was imported is the sheet itself
    again = apply_sheet(doc, text)
    assert again == doc


def test_every_broken_row_is_named_with_its_field() -> None:
    with pytest.raises(SheetError) as caught:
        apply_sheet(base(), sheet(500, BROKEN))
    assert [(p.row, p.field) for p in caught.value.problems] == [
        (row, field) for row, (field, _) in sorted(BROKEN.items())
    ]
    messages = [str(p.message) for p in caught.value.problems]
    assert "'CNCX' is not one of CNC, PLC, DCS, ROBOT, MANUAL" in messages[0]
    assert "'maybe' is not true or false" in messages[1]
    assert "no line 'L9' at site S1" in messages[2]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (["S1", "L1", "M1", "Lathe", "MANUAL", "true", "", ""], "declared_nc"),
        (["S2", "L1", "M1", "Lathe", "CNC", "true", "", ""], "site"),
        (["S1", "L1", "-bad", "Lathe", "CNC", "true", "", ""], "code"),
        (["S1", "L1", "M1", "", "CNC", "true", "", ""], "name"),
        (["S1", "L1", "M1", "Lathe", "CNC", "true", "OP20", ""], "processes"),
        (["S1", "L1", "M1", "Lathe", "CNC", "true", "", "-3"], "ideal_cycle_s"),
        (["S1", "L1", "M1", "Lathe", "CNC"], "row"),
    ],
)
def test_each_field_is_checked(row: list[str], problem: str) -> None:
    text = ",".join(COLUMNS) + "\n" + ",".join(row) + "\n"
    with pytest.raises(SheetError) as caught:
        apply_sheet(base(), text)
    assert [(p.row, p.field) for p in caught.value.problems] == [(2, problem)]


def test_a_machine_twice_and_a_wrong_header() -> None:
    row = "S1,L1,M1,Lathe,CNC,true,OP10,"
    with pytest.raises(SheetError) as caught:
        apply_sheet(base(), ",".join(COLUMNS) + f"\n{row}\n{row}\n")
    assert [(p.row, p.field) for p in caught.value.problems] == [(3, "code")]
    assert str(caught.value.problems[0].message) == "'M1' is on row 2 too"
    with pytest.raises(SheetError) as caught:
        apply_sheet(base(), "site,code\nS1,M1\n")
    assert [(p.row, p.field) for p in caught.value.problems] == [(1, "header")]


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    app = create_app(secured(database_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        root = await person(client, database_url, "root", "platform_admin")
        made = await client.post(
            "/api/v1/enterprises",
            json={"code": "MASS", "uscc": "91110000000000777X", "name": "Mass Co."},
            headers=root,
        )
        assert made.status_code == 201, made.text
        ent = made.json()["enterprise_id"]
        client.headers.update(
            await person(client, database_url, "mass-admin", "enterprise_admin", ent)
        )
        tree = base().model_dump(mode="json", exclude_none=True, exclude={"park"})
        put = await client.put(f"/api/v1/enterprises/{ent}/registry", json=tree)
        assert put.status_code == 200, put.text
        yield client, ent


def equipment_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM equipment").fetchone()
    return int(row[0]) if row else 0


async def test_500_machines_with_3_broken_rows_write_nothing(
    api: tuple[httpx.AsyncClient, int], database_url: str
) -> None:
    client, ent = api
    url = f"/api/v1/enterprises/{ent}/registry/equipment"
    headers = {"content-type": "text/csv"}
    refused = await client.put(url, content=sheet(500, BROKEN), headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid_request"
    named = [(p["row"], p["field"]) for p in refused.json()["detail"]]
    assert named == [(row, field) for row, (field, _) in sorted(BROKEN.items())]
    assert equipment_rows(database_url) == 0

    done = await client.put(url, content=sheet(500, {}), headers=headers)
    assert done.status_code == 200, done.text
    assert (done.json()["equipment"], done.json()["key_processes"]) == (500, 4)
    assert equipment_rows(database_url) == 500
    exported = await client.get(f"/api/v1/enterprises/{ent}/registry", params={"format": "csv"})
    assert exported.text == sheet(500, {})


def test_the_command_line_names_the_rows_and_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    async def seed() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await import_enterprise(conn, base())
            await conn.commit()

    asyncio.run(seed())
    env = {**os.environ, "DATABASE_URL": database_url}
    cli = [sys.executable, "-m", "plantwire.cli", "platform", "registry"]
    (tmp_path / "broken.csv").write_text(sheet(500, BROKEN))
    refused = subprocess.run(
        [*cli, "sheet", "MASS", str(tmp_path / "broken.csv")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert [line.split(": ", 2)[2].split(":")[0] for line in lines[:-1]] == [
        f"row {row}, {field}" for row, (field, _) in sorted(BROKEN.items())
    ]
    assert lines[-1] == "nothing written (3 problems)"
    assert equipment_rows(database_url) == 0
    (tmp_path / "good.csv").write_text(sheet(500, {}))
    done = subprocess.run(
        [*cli, "sheet", "MASS", str(tmp_path / "good.csv")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "MASS: 500 machines registered")
    exported = subprocess.run(
        [*cli, "export", "MASS", "--format", "csv"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert exported.stdout == sheet(500, {})
