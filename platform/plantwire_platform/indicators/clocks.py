"""The clocks of an enterprise's equipment over a window, as its gateways corrected them.

A gateway that finds a device's clock off by more than its tolerance takes the offset off the
device's timestamps and publishes it as the device's metric ``Clock/Offset`` (milliseconds;
device time = stored time + offset), so indicators are computed on the gateway's time line
while the device's own time stays known (``docs/indicators.md``). Here: the offset in force at
the window's end, the largest in the window, and the jumps (a change of more than
:data:`JUMP_MS` between two estimates) within it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

OFFSET_METRIC = "Clock/Offset"
JUMP_MS = 5_000
"""A change of the offset by more than this between two estimates is a jump (as the gateway
counts them)."""


@dataclass(frozen=True, slots=True)
class DeviceClock:
    offset_ms: int
    """In force at the window's end."""
    largest_ms: int
    """The largest correction (by magnitude) in force during the window."""
    jumps: int


def clocks_from(readings: list[float]) -> DeviceClock | None:
    """One device's clock from its ``Clock/Offset`` readings in time order: the one in force
    at the window's start (the last before it), then those in the window."""
    if not readings:
        return None
    values = [round(v) for v in readings]
    jumps = sum(1 for a, b in itertools.pairwise(values) if abs(b - a) > JUMP_MS)
    return DeviceClock(values[-1], max(values, key=abs), jumps)


async def device_clocks(
    conn: psycopg.AsyncConnection[Any], equipment_ids: list[int], start: datetime, end: datetime
) -> dict[int, DeviceClock]:
    """Equipment id -> its clock over the window (only equipment with corrections)."""
    cur = await conn.execute(
        "WITH s AS (SELECT id, equipment_id FROM series"
        "  WHERE equipment_id = ANY(%(eq)s) AND metric = %(metric)s)"
        " SELECT s.equipment_id, b.ts, b.value FROM s"
        " CROSS JOIN LATERAL plantwire_sample_before(s.id, %(start)s) b"
        " UNION ALL"
        " SELECT s.equipment_id, t.ts, t.value FROM s"
        " JOIN plantwire_samples(%(start)s, %(end)s,"
        "  coalesce((SELECT array_agg(id) FROM s), ARRAY[]::bigint[])) t ON t.series_id = s.id"
        " ORDER BY 2",
        {"eq": equipment_ids, "metric": OFFSET_METRIC, "start": start, "end": end},
    )
    readings: dict[int, list[float]] = defaultdict(list)
    for eid, _ts, value in await cur.fetchall():
        if value is not None:
            readings[eid].append(float(value))
    out = {}
    for eid, rows in readings.items():
        clock = clocks_from(rows)
        if clock is not None and (clock.largest_ms or clock.jumps):
            out[eid] = clock
    return out
