"""Reading the registry: enterprises and their sites, lines, processes and equipment."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


async def list_enterprises(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.id, e.code, e.uscc, e.name, e.region,"
            " coalesce((SELECT timezone FROM site WHERE enterprise_id = e.id ORDER BY id"
            " LIMIT 1), 'UTC') AS timezone,"
            " (SELECT count(*) FROM site s WHERE s.enterprise_id = e.id) AS sites,"
            " (SELECT count(*) FROM equipment q JOIN site s ON s.id = q.site_id"
            "   WHERE s.enterprise_id = e.id) AS equipment"
            " FROM enterprise e ORDER BY e.id"
        )
        return await cur.fetchall()


async def timezone_of(conn: psycopg.AsyncConnection[Any], enterprise_ids: list[int]) -> str:
    """Time zone of the first site of the first of these enterprises that has one."""
    cur = await conn.execute(
        "SELECT timezone FROM site WHERE enterprise_id = ANY(%s) ORDER BY enterprise_id, id"
        " LIMIT 1",
        (enterprise_ids,),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else "UTC"


async def get_enterprise(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int
) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.id, e.code, e.uscc, e.name, e.region,"
            " coalesce((SELECT timezone FROM site WHERE enterprise_id = e.id ORDER BY id"
            " LIMIT 1), 'UTC') AS timezone FROM enterprise e WHERE e.id = %s",
            (enterprise_id,),
        )
        return await cur.fetchone()


async def enterprise_tree(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int
) -> list[dict[str, Any]]:
    """The enterprise's sites with their lines, processes and equipment, as registered now."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT s.id, s.code, s.name, s.timezone, s.edge_node_id, s.shifts, s.workdays,"
            " coalesce((SELECT json_agg(json_build_object("
            "   'code', e.code, 'name', e.name, 'line', l.code, 'control_type', e.control_type,"
            "   'declared_nc', e.declared_nc, 'ideal_cycle_s', e.ideal_cycle_s) ORDER BY e.code)"
            "  FROM equipment e LEFT JOIN line l ON l.id = e.line_id WHERE e.site_id = s.id),"
            "  '[]') AS equipment,"
            " coalesce((SELECT json_agg(json_build_object("
            "   'line', l.code, 'code', p.code, 'name', p.name, 'is_key', p.is_key,"
            "   'key_reason', p.key_reason, 'equipment', (SELECT coalesce(json_agg(e.code"
            "     ORDER BY e.code), '[]') FROM process_equipment pe JOIN equipment e"
            "     ON e.id = pe.equipment_id WHERE pe.process_step_id = p.id))"
            "   ORDER BY l.code, p.code)"
            "  FROM process_step p JOIN line l ON l.id = p.line_id WHERE l.site_id = s.id),"
            "  '[]') AS processes"
            " FROM site s WHERE s.enterprise_id = %s ORDER BY s.id",
            (enterprise_id,),
        )
        return await cur.fetchall()
