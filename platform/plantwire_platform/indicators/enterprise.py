"""Indicators of an enterprise over a window: reads the registry as it was and the telemetry,
then applies the pure formulas of :mod:`plantwire_platform.indicators.formulas`.

A window that spans a registry change is cut into segments at each change; every segment is
computed with the registry valid in it, and the window's rates are the segments' rates
weighted by their duration. Coverage and availability are measured against each line's
planned production time (its shift calendar, else its site's, minus its planned maintenance
windows). Before an entry of the registry existed it counts
nowhere; a window that ends before the enterprise's registry begins has no indicators at all
(:attr:`EnterpriseIndicators.before_registry`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from plantwire_bus.state import GOOD_COUNT_METRIC, PART_COUNT_METRIC, SCRAP_COUNT_METRIC
from plantwire_platform.indicators.clocks import DeviceClock, device_clocks
from plantwire_platform.indicators.formulas import (
    EquipmentRef,
    NcRates,
    Oee,
    ProcessRef,
    Thresholds,
    Usage,
    counter_increase,
    nc_rates,
    oee,
)
from plantwire_platform.indicators.shift_calendar import (
    Interval,
    ShiftCalendar,
    merge,
    parse_shifts,
)
from plantwire_platform.indicators.usage import UsageReader, subtract

DEFAULT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the window with one registry state."""

    start: datetime
    end: datetime
    rates: NcRates


@dataclass(frozen=True, slots=True)
class EquipmentResult:
    id: int
    code: str
    site: str
    line: str
    usage: Usage
    oee: Oee
    clock: DeviceClock | None = None


@dataclass(frozen=True, slots=True)
class EnterpriseIndicators:
    start: datetime
    end: datetime
    segments: tuple[Segment, ...]
    equipment: tuple[EquipmentResult, ...]
    equipment_registered: int
    equipment_online: int
    thresholds: Thresholds
    lines: dict[tuple[str, str], Oee] = field(default_factory=dict)
    """Each line's OEE by (site code, line code): a line's code is unique only in its site."""
    registered_from: datetime | None = None
    """When the enterprise's registry begins (its first process or equipment entry)."""

    @property
    def before_registry(self) -> bool:
        """The whole window lies before the enterprise's registry began."""
        return self.registered_from is None or self.end <= self.registered_from

    def weighted(self, attribute: str) -> tuple[float, float]:
        """(numerator, denominator) of a count, averaged over segments by duration."""
        total = (self.end - self.start).total_seconds()
        num = den = 0.0
        for s in self.segments:
            w = (s.end - s.start).total_seconds() / total if total > 0 else 0.0
            value = getattr(s.rates, attribute)
            num += w * float(value)
            den += w * s.rates.key_processes
        return num, den

    @property
    def oee(self) -> Oee:
        """All its equipment pooled as a line's is (computed ``with_oee``)."""
        return pooled_oee(self.equipment)

    @property
    def last(self) -> NcRates:
        return self.segments[-1].rates

    def mdi_time(self) -> tuple[float, float]:
        """(MDI, all) EXECUTING seconds of the covered key processes' equipment."""
        covered = [v for s in self.segments for v in s.rates.verdicts if v.covered]
        return sum(v.mdi_executing_s for v in covered), sum(v.executing_s for v in covered)

    @property
    def mdi_share(self) -> float | None:
        mdi, executing = self.mdi_time()
        return mdi / executing if executing > 0 else None


async def default_window(
    conn: psycopg.AsyncConnection[Any], enterprise_ids: Sequence[int], now: datetime
) -> tuple[datetime, datetime]:
    """The window used when the caller names none: the last hour, shortened to the current
    connection period of the enterprises (see :func:`current_period_start`)."""
    earliest = now - DEFAULT_WINDOW
    cur = await conn.execute(
        "SELECT c.online_at, c.offline_at FROM connectivity_session c"
        " JOIN equipment e ON e.id = c.equipment_id JOIN site s ON s.id = e.site_id"
        " WHERE s.enterprise_id = ANY(%s) AND c.online_at < %s"
        " AND (c.offline_at IS NULL OR c.offline_at > %s)",
        (list(enterprise_ids), now, earliest),
    )
    sessions = [(row[0], row[1]) for row in await cur.fetchall()]
    return current_period_start(sessions, earliest, now), now


def current_period_start(
    sessions: list[tuple[datetime, datetime | None]], earliest: datetime, now: datetime
) -> datetime:
    """Start of the stretch of time up to ``now`` in which some equipment was always online.

    A freshly connected enterprise, or one back after a complete outage, is judged on the
    time since it (re)connected rather than on time it could not have reported. If nothing
    is online now, or it has been for longer, the answer is ``earliest``.
    """
    start: datetime | None = None
    end: datetime | None = None
    for online, offline in sorted(sessions, key=lambda s: s[0]):
        stop = offline or now
        if end is not None and online <= end:
            end = max(end, stop)
        else:
            start, end = online, stop
    if start is None or end is None or end < now:
        return earliest
    return max(start, earliest)


@dataclass(frozen=True, slots=True)
class _Equipment:
    id: int
    code: str
    site_id: int
    site: str
    line: str
    ideal_cycle_s: float | None
    versions: tuple[tuple[datetime, datetime | None, bool], ...]  # (from, to, declared_nc)

    def declared_at(self, at: datetime) -> bool:
        return any(a <= at and (b is None or at < b) and nc for a, b, nc in self.versions)


@dataclass(frozen=True, slots=True)
class _ProcessVersion:
    id: int
    code: str
    name: str
    valid_from: datetime
    valid_to: datetime | None
    is_key: bool
    equipment_ids: tuple[int, ...]


def plain_offset(t: datetime) -> datetime:
    """``t`` with the standard library's fixed-offset time zone when its own is another fixed
    offset (an API's parsed times carry pydantic's, whose every offset lookup is a call out of
    the C datetime code: the window's hour arithmetic took twice as long with it, 3.7 vs 1.9 ms
    a site plan over 30 days); the same instant, printed the same. Named zones stay."""
    if t.tzinfo is None or isinstance(t.tzinfo, timezone) or hasattr(t.tzinfo, "key"):
        return t
    return t.astimezone(timezone(t.utcoffset() or timedelta(0)))


async def enterprise_indicators(
    conn: psycopg.AsyncConnection[Any],
    enterprise_id: int,
    start: datetime,
    end: datetime,
    thresholds: Thresholds,
    with_oee: bool = False,
) -> EnterpriseIndicators:
    """All indicators of one enterprise; ``with_oee`` adds production counts and OEE."""
    start, end = plain_offset(start), plain_offset(end)
    async with conn.pipeline():  # its registry and sessions in one round trip, not five
        reads = [
            await conn.execute(EQUIPMENT, (enterprise_id, end, start)),
            await conn.execute(PROCESS_VERSIONS, (enterprise_id, end, start)),
            await conn.execute(CALENDARS, (enterprise_id,)),
            await conn.execute(SESSIONS, (enterprise_id, end, start)),
            await conn.execute(REGISTERED_FROM, {"e": enterprise_id}),
            await conn.execute(LINE_CALENDARS, {"e": enterprise_id, "a": start, "b": end}),
        ]
    equipment = _equipment(await reads[0].fetchall())
    processes = _process_versions(await reads[1].fetchall())
    calendars = _calendars(await reads[2].fetchall())
    sessions = _sessions(await reads[3].fetchall())
    since = await reads[4].fetchone()
    lines = await reads[5].fetchall()
    ids = sorted(equipment)

    changes = {t for p in processes for t in (p.valid_from, p.valid_to)} | {
        t for e in equipment.values() for a, b, _ in e.versions for t in (a, b)
    }
    cuts = sorted({start, end} | {t for t in changes if t is not None and start < t < end})
    plans = planned_by_line(calendars, lines, start, end)
    planned = {e.id: plans[(e.site_id, e.line)] for e in equipment.values()}
    reader = UsageReader(conn, start, end, sessions)
    await reader.prepare(planned, cuts[1:-1])
    segments = []
    for a, b in itertools.pairwise(cuts):
        refs = [
            ProcessRef(
                p.id,
                p.code,
                p.name,
                tuple(
                    EquipmentRef(e, equipment[e].code, equipment[e].declared_at(a))
                    for e in p.equipment_ids
                    if e in equipment
                ),
            )
            for p in processes
            if p.is_key and p.valid_from <= a and (p.valid_to is None or a < p.valid_to)
        ]
        usage = {e.id: reader.usage(e.id, a, b, planned[e.id]) for e in equipment.values()}
        segments.append(Segment(a, b, nc_rates(refs, usage, (b - a).total_seconds(), thresholds)))

    results = []
    counters = await _counters(conn, ids, start, end, sessions) if with_oee else {}
    clocks = await device_clocks(conn, ids, start, end) if with_oee else {}
    for e in equipment.values():
        u = reader.usage(e.id, start, end, planned[e.id])
        scrap = counter_increase(counters.get((e.id, SCRAP_COUNT_METRIC), []))
        parts = _parts_made(counters, e.id, scrap)
        results.append(
            EquipmentResult(
                e.id,
                e.code,
                e.site,
                e.line,
                u,
                oee(u.planned_s or 0.0, u.executing_s, parts, scrap, e.ideal_cycle_s),
                clocks.get(e.id),
            )
        )
    online = sum(1 for e in ids if sessions.get(e))
    return EnterpriseIndicators(
        start,
        end,
        tuple(segments),
        tuple(results),
        len(equipment),
        online,
        thresholds,
        _line_oee(results) if with_oee else {},
        None if since is None else since[0],
    )


REGISTERED_FROM = (
    "SELECT least((SELECT min(h.valid_from) FROM equipment_history h"
    "  JOIN equipment e ON e.id = h.equipment_id JOIN site s ON s.id = e.site_id"
    "  WHERE s.enterprise_id = %(e)s),"
    " (SELECT min(h.valid_from) FROM process_history h"
    "  JOIN process_step p ON p.id = h.process_step_id JOIN line l ON l.id = p.line_id"
    "  JOIN site s ON s.id = l.site_id WHERE s.enterprise_id = %(e)s))"
)
"""When the enterprise's registry begins (its first process or equipment entry)."""


def _parts_made(counters: dict[tuple[int, str], list[float]], eid: int, scrap: float) -> float:
    """Parts made: the part counter's increase, or good + scrap for equipment that counts
    good parts instead (e.g. an operator terminal)."""
    if (eid, PART_COUNT_METRIC) in counters:
        return counter_increase(counters[(eid, PART_COUNT_METRIC)])
    if (eid, GOOD_COUNT_METRIC) in counters:
        return counter_increase(counters[(eid, GOOD_COUNT_METRIC)]) + scrap
    return 0.0


def _line_oee(results: list[EquipmentResult]) -> dict[tuple[str, str], Oee]:
    """Each line's OEE by (site, line code): its equipment pooled (:func:`pooled_oee`). Two
    sites may each have a line of one code; those are two lines. Equipment on no line is
    pooled as its site's line ``""``."""
    by_line: dict[tuple[str, str], list[EquipmentResult]] = defaultdict(list)
    for r in results:
        by_line[(r.site, r.line)].append(r)
    return {line: pooled_oee(items) for line, items in by_line.items()}


def pooled_oee(items: Sequence[EquipmentResult]) -> Oee:
    """The OEE of several machines (a line's, an enterprise's): summed times and counts,
    count-weighted ideal cycles over the machines that have one."""
    timed = [r for r in items if r.oee.ideal_cycle_s]
    ideal_work = sum((r.oee.ideal_cycle_s or 0.0) * r.oee.total_count for r in timed)
    run_timed = sum(r.oee.run_s for r in timed)
    base = oee(
        sum(r.oee.planned_s for r in items),
        sum(r.oee.run_s for r in items),
        sum(r.oee.total_count for r in items),
        sum(r.oee.scrap_count for r in items),
        None,
    )
    performance = min(ideal_work / run_timed, 1.0) if run_timed > 0 and timed else None
    return Oee(
        base.availability,
        performance,
        base.quality,
        base.planned_s,
        base.run_s,
        base.total_count,
        base.scrap_count,
        None,
    )


EQUIPMENT = (
    "SELECT e.id, e.code, e.site_id, s.code, coalesce(l.code, ''), e.ideal_cycle_s,"
    " h.valid_from, h.valid_to, h.declared_nc"
    " FROM equipment e JOIN site s ON s.id = e.site_id LEFT JOIN line l ON l.id = e.line_id"
    " JOIN equipment_history h ON h.equipment_id = e.id"
    " WHERE s.enterprise_id = %s AND h.valid_from < %s"
    " AND (h.valid_to IS NULL OR h.valid_to > %s) ORDER BY e.id, h.valid_from"
)
"""An enterprise's equipment versions in a window (enterprise, end, start)."""


def _equipment(found: list[Any]) -> dict[int, _Equipment]:
    rows: dict[int, list[Any]] = defaultdict(list)
    for row in found:
        rows[row[0]].append(row)
    return {
        eid: _Equipment(
            eid, r[0][1], r[0][2], r[0][3], r[0][4], r[0][5], tuple((x[6], x[7], x[8]) for x in r)
        )
        for eid, r in rows.items()
    }


PROCESS_VERSIONS = (
    "SELECT p.id, p.code, p.name, h.valid_from, h.valid_to, h.is_key, h.equipment_ids"
    " FROM process_step p JOIN line l ON l.id = p.line_id JOIN site s ON s.id = l.site_id"
    " JOIN process_history h ON h.process_step_id = p.id"
    " WHERE s.enterprise_id = %s AND h.valid_from < %s"
    " AND (h.valid_to IS NULL OR h.valid_to > %s) ORDER BY p.id, h.valid_from"
)
"""An enterprise's process step versions in a window (enterprise, end, start)."""


def _process_versions(found: list[Any]) -> list[_ProcessVersion]:
    return [_ProcessVersion(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6])) for r in found]


CALENDARS = "SELECT id, timezone, shifts, workdays FROM site WHERE enterprise_id = %s"
"""An enterprise's sites' shift calendars."""


def _calendars(found: list[Any]) -> dict[int, ShiftCalendar]:
    return {
        sid: ShiftCalendar(tz, parse_shifts(shifts), frozenset(workdays))
        for sid, tz, shifts, workdays in found
    }


LINE_CALENDARS = (
    "SELECT l.site_id, l.code, l.shifts, l.workdays,"
    " ARRAY(SELECT m.starts_at FROM line_maintenance m WHERE m.line_id = l.id"
    "  AND m.starts_at < %(b)s AND m.ends_at > %(a)s ORDER BY m.starts_at),"
    " ARRAY(SELECT m.ends_at FROM line_maintenance m WHERE m.line_id = l.id"
    "  AND m.starts_at < %(b)s AND m.ends_at > %(a)s ORDER BY m.starts_at)"
    " FROM line l JOIN site s ON s.id = l.site_id WHERE s.enterprise_id = %(e)s"
)
"""An enterprise's lines' own shifts and workdays (NULL: the site's) and their maintenance
windows overlapping the window [a, b)."""


def planned_by_line(
    sites: dict[int, ShiftCalendar], lines: list[Any], start: datetime, end: datetime
) -> dict[tuple[int, str], list[Interval]]:
    """Planned time in [start, end) of each (site, line code), and of a site's equipment on
    no line (site, ""): the line's shifts on its workdays (default: its site's), in its
    site's time zone, minus its planned maintenance windows. Lines that plan as their site
    does and have no maintenance share their site's list."""
    by_site = {site: cal.planned(start, end) for site, cal in sites.items()}
    out: dict[tuple[int, str], list[Interval]] = {(site, ""): p for site, p in by_site.items()}
    for site, code, shifts, workdays, starts, ends in lines:
        cal = sites[site]
        if shifts is None and workdays is None:
            plan = by_site[site]
        else:
            plan = ShiftCalendar(
                cal.timezone,
                cal.shifts if shifts is None else parse_shifts(shifts),
                cal.weekdays if workdays is None else frozenset(workdays),
            ).planned(start, end)
        if starts:
            plan = subtract(plan, merge(zip(starts, ends, strict=True)))
        out[(site, code)] = plan
    return out


SESSIONS = (
    "SELECT c.equipment_id, c.online_at, c.offline_at FROM connectivity_session c"
    " WHERE c.equipment_id IN (SELECT e.id FROM equipment e JOIN site s ON s.id = e.site_id"
    "  WHERE s.enterprise_id = %s) AND c.online_at < %s"
    " AND (c.offline_at IS NULL OR c.offline_at > %s) ORDER BY c.online_at"
)
"""The connectivity sessions of an enterprise's equipment in a window (enterprise, end,
start)."""


def _sessions(found: list[Any]) -> dict[int, list[tuple[datetime, datetime | None]]]:
    out: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for eid, online, offline in found:
        out[eid].append((online, offline))
    return dict(out)


async def _counters(
    conn: psycopg.AsyncConnection[Any],
    equipment_ids: list[int],
    start: datetime,
    end: datetime,
    sessions: dict[int, list[tuple[datetime, datetime | None]]],
) -> dict[tuple[int, str], list[float]]:
    """Counter readings in the window, preceded by the last reading before it when that is
    the baseline: the machine was online at the window's start, so that reading is the value
    it had then (read in that session, or the value it came back with, which may carry an
    older device timestamp than the session's start). A machine offline at the window's
    start has its baseline in the window (its first reading after it came back), so the
    parts it made before the window are not counted in it."""
    cur = await conn.execute(
        "WITH s AS (SELECT id, equipment_id, metric FROM series"
        "  WHERE equipment_id = ANY(%(eq)s) AND metric IN (%(parts)s, %(scrap)s, %(good)s))"
        " SELECT s.equipment_id, s.metric, t.ts, t.value, false FROM s"
        " JOIN plantwire_samples(%(start)s, %(end)s,"
        "  coalesce((SELECT array_agg(id) FROM s), ARRAY[]::bigint[])) t"
        "  ON t.series_id = s.id"
        " UNION ALL"
        " SELECT s.equipment_id, s.metric, b.ts, b.value, true FROM s"
        " CROSS JOIN LATERAL plantwire_sample_before(s.id, %(start)s) b"
        " ORDER BY 3",
        {
            "eq": equipment_ids,
            "parts": PART_COUNT_METRIC,
            "scrap": SCRAP_COUNT_METRIC,
            "good": GOOD_COUNT_METRIC,
            "start": start,
            "end": end,
        },
    )
    out: dict[tuple[int, str], list[float]] = defaultdict(list)
    for eid, metric, _ts, value, before in await cur.fetchall():
        if value is None:
            continue
        if before and not any(
            on <= start and (off is None or off > start) for on, off in sessions.get(eid, [])
        ):
            continue  # offline at the window's start: no baseline before the window
        out[(eid, metric)].append(float(value))
    return dict(out)
