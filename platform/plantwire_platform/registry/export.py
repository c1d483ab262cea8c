"""An enterprise's registry as it is now, as a document (:mod:`.document`): what its admins
export, edit and import again."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from plantwire_platform.registry.document import (
    Enterprise,
    Equipment,
    Line,
    Maintenance,
    Process,
    Site,
)


async def enterprise_document(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int
) -> Enterprise | None:
    """The enterprise with its sites, lines, process steps and equipment as registered now."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.code, e.uscc, e.name, e.region, p.code AS park FROM enterprise e"
            " LEFT JOIN park p ON p.id = e.park_id WHERE e.id = %s",
            (enterprise_id,),
        )
        ent = await cur.fetchone()
        if ent is None:
            return None
        await cur.execute(
            "SELECT id, code, name, timezone, edge_node_id, shifts, workdays FROM site"
            " WHERE enterprise_id = %s ORDER BY id",
            (enterprise_id,),
        )
        sites = await cur.fetchall()
        await cur.execute(
            "SELECT l.site_id, l.id, l.code, l.name, l.shifts, l.workdays,"
            " ARRAY(SELECT json_build_object('start', m.starts_at, 'end', m.ends_at,"
            "  'reason', m.reason) FROM line_maintenance m WHERE m.line_id = l.id"
            "  ORDER BY m.starts_at, m.ends_at) AS maintenance"
            " FROM line l JOIN site s ON s.id = l.site_id"
            " WHERE s.enterprise_id = %s ORDER BY l.id",
            (enterprise_id,),
        )
        lines = await cur.fetchall()
        await cur.execute(
            "SELECT p.line_id, p.code, p.name, p.is_key, p.key_reason,"
            " ARRAY(SELECT q.code FROM process_equipment pe JOIN equipment q"
            "  ON q.id = pe.equipment_id WHERE pe.process_step_id = p.id ORDER BY q.code)"
            " AS equipment"
            " FROM process_step p JOIN line l ON l.id = p.line_id JOIN site s ON s.id = l.site_id"
            " WHERE s.enterprise_id = %s ORDER BY p.id",
            (enterprise_id,),
        )
        processes = await cur.fetchall()
        await cur.execute(
            "SELECT q.site_id, q.code, q.name, l.code AS line, q.control_type, q.declared_nc,"
            " q.ideal_cycle_s FROM equipment q JOIN site s ON s.id = q.site_id"
            " LEFT JOIN line l ON l.id = q.line_id WHERE s.enterprise_id = %s ORDER BY q.id",
            (enterprise_id,),
        )
        equipment = await cur.fetchall()

    def site_of(row: dict[str, Any]) -> Site:
        return Site(
            code=row["code"],
            name=row["name"],
            timezone=row["timezone"],
            edge_node=row["edge_node_id"],
            shifts=row["shifts"],
            workdays=tuple(row["workdays"]),
            lines=tuple(
                Line(
                    code=line["code"],
                    name=line["name"],
                    shifts=line["shifts"],
                    workdays=None if line["workdays"] is None else tuple(line["workdays"]),
                    maintenance=tuple(Maintenance.model_validate(m) for m in line["maintenance"]),
                    processes=tuple(
                        Process(
                            code=p["code"],
                            name=p["name"],
                            is_key=p["is_key"],
                            key_reason=p["key_reason"],
                            equipment=tuple(p["equipment"]),
                        )
                        for p in processes
                        if p["line_id"] == line["id"]
                    ),
                )
                for line in lines
                if line["site_id"] == row["id"]
            ),
            equipment=tuple(
                Equipment(
                    code=q["code"],
                    name=q["name"],
                    line=q["line"] or "",
                    control_type=q["control_type"],
                    declared_nc=q["declared_nc"],
                    ideal_cycle_s=q["ideal_cycle_s"],
                )
                for q in equipment
                if q["site_id"] == row["id"]
            ),
        )

    return Enterprise(
        code=ent["code"],
        uscc=ent["uscc"],
        name=ent["name"],
        region=ent["region"],
        park=ent["park"],
        sites=tuple(site_of(s) for s in sites),
    )
