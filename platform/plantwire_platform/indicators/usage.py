"""Equipment usage over long windows: whole planned hours from the hourly roll-up, the rest
(partial hours, hours cut by a shift or a registry change, hours not yet closed) computed
exactly from the state samples.

The roll-up is kept current as data arrives: :func:`keep_current`, run by the ingest workers'
upkeep, stores every hour that has been closed for :data:`SETTLE` (one pass per equipment with
:func:`plantwire_platform.indicators.formulas.usage_by_hour`); database triggers drop hours
again when late state samples or connectivity changes arrive for them, and the next pass
recomputes them. Hours still missing when a request reads them are computed and stored then.

A UTC day whose 24 hours are all stored also has a row in ``usage_day`` (migration 0093): the
running sums of its hours, stored in the transaction that stores the day's last hour and
dropped with any of its hours. A run of wanted hours inside one day is read from it as one
subtraction; a day without its row is read from its hours.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC
from plantwire_platform.indicators.formulas import (
    HOUR,
    StatePoint,
    Usage,
    usage_by_hour,
    usage_in_window,
    utc_hour,
)
from plantwire_platform.indicators.shift_calendar import Interval, intersect, merge, seconds

SETTLE = timedelta(minutes=5)  # an hour is rolled up once it has been closed this long

Sessions = list[tuple[datetime, datetime | None]]


def _hours(a: datetime, b: datetime) -> list[datetime]:
    """Whole UTC hours [h, h+1) inside [a, b)."""
    h = utc_hour(a)
    if h < a:
        h += HOUR
    out = []
    while h + HOUR <= b:
        out.append(h)
        h += HOUR
    return out


def covered_hours(plan: list[Interval], hours: list[datetime]) -> list[datetime]:
    """The hours [h, h+1) of ``hours`` (ascending) that lie inside one interval of ``plan``
    (sorted by start), in one pass over both."""
    out, i = [], 0
    for h in hours:
        end = h + HOUR
        while i < len(plan) and plan[i][1] < end:  # ends too early for this and later hours
            i += 1
        if i < len(plan) and plan[i][0] <= h:  # later intervals start later still
            out.append(h)
    return out


def _day(hour: datetime) -> datetime:
    """The UTC midnight that begins ``hour``'s day."""
    return hour.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_runs(hours: list[datetime]) -> tuple[list[tuple[datetime, int, int]], list[datetime]]:
    """Whole hours ``hours`` (ascending) as runs of consecutive hours inside one UTC day,
    (day, i, j) for its hours i..j-1, and any hours not on a UTC hour (in a time zone a
    half hour off), which are read one by one."""
    runs: list[tuple[datetime, int, int]] = []
    rest: list[datetime] = []
    for h in hours:
        u = h.astimezone(UTC)
        if u.minute or u.second or u.microsecond:
            rest.append(h)
            continue
        day = u.replace(hour=0)
        if runs and runs[-1][0] == day and runs[-1][2] == u.hour:
            runs[-1] = (day, runs[-1][1], u.hour + 1)
        else:
            runs.append((day, u.hour, u.hour + 1))
    return runs, rest


SUMS = (
    "WITH s AS (SELECT * FROM unnest(%(sa)s::timestamptz[], %(sb)s::timestamptz[])"
    "  WITH ORDINALITY AS s(a, b, i)),"
    " q AS (SELECT * FROM unnest(%(qd)s::timestamptz[], %(qi)s::int[], %(qj)s::int[])"
    "  AS q(day, i, j)),"
    " d AS MATERIALIZED (SELECT * FROM usage_day"
    "  WHERE equipment_id = ANY(%(ids)s) AND day = ANY(%(qd)s::timestamptz[])),"
    # the runs of a day without its row (not over yet, or being recomputed): from its hours
    " lacking AS MATERIALIZED (SELECT e.id, q.* FROM unnest(%(ids)s::bigint[]) e(id) CROSS JOIN q"
    "  WHERE NOT EXISTS (SELECT FROM d WHERE d.equipment_id = e.id AND d.day = q.day)),"
    " x AS (SELECT d.equipment_id, q.day + q.i * interval '1 hour' AS t, q.j - q.i AS n,"
    "   d.observed_s[q.j + 1] - d.observed_s[q.i + 1] AS observed_s,"
    "   d.executing_s[q.j + 1] - d.executing_s[q.i + 1] AS executing_s,"
    "   d.auto_s[q.j + 1] - d.auto_s[q.i + 1] AS auto_s,"
    "   d.mdi_s[q.j + 1] - d.mdi_s[q.i + 1] AS mdi_s FROM d JOIN q ON q.day = d.day"
    "  UNION ALL SELECT u.equipment_id, u.hour, 1, u.observed_s::float8, u.executing_s::float8,"
    "   u.auto_s::float8, u.mdi_s::float8 FROM lacking l CROSS JOIN LATERAL"
    "   (SELECT * FROM usage_hour WHERE equipment_id = l.id"
    "    AND hour >= l.day + l.i * interval '1 hour' AND hour < l.day + l.j * interval '1 hour') u"
    "  UNION ALL SELECT u.equipment_id, u.hour, 1, u.observed_s::float8, u.executing_s::float8,"
    "   u.auto_s::float8, u.mdi_s::float8"
    "   FROM unnest(%(ra)s::timestamptz[], %(rb)s::timestamptz[]) r(a, b)"
    "   JOIN usage_hour u ON u.hour >= r.a AND u.hour < r.b WHERE u.equipment_id = ANY(%(ids)s))"
    # a run of wanted hours never straddles a cut (an hour holding one is not wanted)
    " SELECT x.equipment_id, s.i, sum(x.n), sum(x.observed_s), sum(x.executing_s),"
    "  sum(x.auto_s), sum(x.mdi_s) FROM x JOIN s ON x.t >= s.a AND x.t < s.b GROUP BY 1, 2"
)
"""Per equipment and segment of the window: hours summed and the roll-up's sums."""


_Sums = tuple[dict[tuple[int, int], Usage], dict[tuple[int, int], int]]


async def _collect_sums(sent: list[psycopg.AsyncCursor[Any]]) -> _Sums:
    """Sums and hours per (equipment, segment) from the queries of ``_send_sums``."""
    sums: dict[tuple[int, int], Usage] = {}
    counts: dict[tuple[int, int], int] = {}
    for cur in sent:
        for eid, i, n, observed, executing, auto, mdi in await cur.fetchall():
            sums[(eid, i - 1)] = Usage(observed, executing, auto, mdi, n * 3600.0)
            counts[(eid, i - 1)] = n
    return sums, counts


@dataclass
class UsageReader:
    """Usage of a set of equipment inside one window [start, end)."""

    conn: psycopg.AsyncConnection[Any]
    start: datetime
    end: datetime
    sessions: dict[int, Sessions]
    rollup_hours: int = 0
    exact_points: int = 0

    async def prepare(self, planned: dict[int, list[Interval]], cuts: Iterable[datetime]) -> None:
        """Decide per equipment which hours come from the roll-up, sum them per segment of the
        window (the database does the summing), and load the samples for the rest."""
        now = datetime.now(UTC)
        inner = sorted(set(cuts))
        self._segments = list(itertools.pairwise([self.start, *inner, self.end]))
        cut_hours = {utc_hour(t) for t in inner}
        wanted: dict[int, list[datetime]] = {}
        self._exact: dict[int, list[Interval]] = {}
        closed = [
            h
            for h in _hours(self.start, self.end)
            if h + HOUR <= now - SETTLE and h not in cut_hours
        ]
        by_plan: dict[tuple[Interval, ...], tuple[list[datetime], list[Interval]]] = {}
        for eid, plan in planned.items():
            key = tuple(plan)  # equipment of one site share a plan: work it out once
            if key not in by_plan:
                hours = covered_hours(plan, closed)
                by_plan[key] = (hours, subtract(plan, [(h, h + HOUR) for h in hours]))
            wanted[eid], self._exact[eid] = by_plan[key]
        self._wanted = wanted  # equipment sharing a plan share the very list
        self._usage: dict[tuple[int, datetime, datetime, int], Usage] = {}
        self._clips: dict[tuple[int, int, datetime, datetime], tuple[float, list[Interval]]] = {}
        ids = [e for e, hours in wanted.items() if hours]
        ranges = merge(iv for ivs in self._exact.values() for iv in ivs)
        exact_ids = [e for e, ivs in self._exact.items() if ivs]
        async with self.conn.pipeline():  # the sums and the samples in one round trip
            sums = await self._send_sums(ids)
            points = await self._send_fetch(exact_ids, ranges) if exact_ids and ranges else None
        self._sums = await self._sum_rollup(ids, await _collect_sums(sums))
        self._points = await self._points_from(points) if points else {}
        self.exact_points = sum(len(p) for p in self._points.values())

    def usage(self, eid: int, a: datetime, b: datetime, planned: list[Interval]) -> Usage:
        """Usage of ``eid`` over its planned time inside [a, b): a segment or the whole window
        (worked out once: a window without cuts is its own only segment)."""
        key = (eid, a, b, id(planned))
        if key not in self._usage:
            self._usage[key] = self._compute_usage(eid, a, b, planned)
        return self._usage[key]

    def _compute_usage(self, eid: int, a: datetime, b: datetime, planned: list[Interval]) -> Usage:
        rolled = [
            u
            for (seg_a, seg_b), u in zip(self._segments, self._sums.get(eid, []), strict=False)
            if a <= seg_a and seg_b <= b
        ]
        # the rest was worked out by prepare() for the planned time this equipment has
        planned_s, rest = self._clip(planned, self._exact.get(eid, planned), a, b)
        exact = usage_in_window(a, b, self.sessions.get(eid, []), self._points.get(eid, []), rest)
        return Usage(
            observed_s=exact.observed_s + sum(u.observed_s for u in rolled),
            executing_s=exact.executing_s + sum(u.executing_s for u in rolled),
            auto_executing_s=exact.auto_executing_s + sum(u.auto_executing_s for u in rolled),
            mdi_executing_s=exact.mdi_executing_s + sum(u.mdi_executing_s for u in rolled),
            planned_s=planned_s,
        )

    def _clip(
        self, planned: list[Interval], exact: list[Interval], a: datetime, b: datetime
    ) -> tuple[float, list[Interval]]:
        """Planned seconds and the exact part inside [a, b), worked out once for all the
        equipment that shares a plan (a site's)."""
        key = (id(planned), id(exact), a, b)
        if key not in self._clips:
            self._clips[key] = (seconds(intersect(planned, [(a, b)])), intersect(exact, [(a, b)]))
        return self._clips[key]

    async def _sum_rollup(self, ids: list[int], found: _Sums) -> dict[int, list[Usage]]:
        """Per equipment and segment, the summed roll-up of its wanted hours (``found`` for
        ``ids``, after computing the hours that are missing)."""
        if not ids:
            return {}
        sums, counts = found
        wanted = self._wanted
        short = [
            e
            for e in ids
            if sum(counts.get((e, i), 0) for i in range(len(self._segments))) < len(wanted[e])
        ]
        if short:
            cur = await self.conn.execute(
                "SELECT equipment_id, hour FROM usage_hour WHERE equipment_id = ANY(%s)"
                " AND hour >= %s AND hour < %s",
                (short, self.start, self.end),
            )
            have: dict[int, set[datetime]] = defaultdict(set)
            for eid, hour in await cur.fetchall():
                have[eid].add(hour)
            await self.compute({e: [h for h in wanted[e] if h not in have[e]] for e in short})
            sums, counts = await _collect_sums(await self._send_sums(ids))
        self.rollup_hours = sum(counts.values())
        return {e: [sums.get((e, i), Usage()) for i in range(len(self._segments))] for e in ids}

    async def _send_sums(self, ids: list[int]) -> list[psycopg.AsyncCursor[Any]]:
        """Ask for the summed roll-up of the wanted hours of ``ids``, per equipment and
        segment (each run of them inside a UTC day from that day's row of ``usage_day``, a day
        without one from its hours), with the number of hours it holds: a query per set of
        equipment with the same wanted hours."""
        by_hours: dict[int, tuple[list[datetime], list[int]]] = {}
        for e in ids:
            by_hours.setdefault(id(self._wanted[e]), (self._wanted[e], []))[1].append(e)
        sent = []
        for hours, group in by_hours.values():
            days, rest = day_runs(hours)
            runs = merge((h, h + HOUR) for h in rest)
            sent.append(
                await self.conn.execute(
                    SUMS,
                    {
                        "sa": [a for a, _ in self._segments],
                        "sb": [b for _, b in self._segments],
                        "ids": group,
                        "qd": [d for d, _, _ in days],
                        "qi": [i for _, i, _ in days],
                        "qj": [j for _, _, j in days],
                        "ra": [a for a, _ in runs],
                        "rb": [b for _, b in runs],
                    },
                )
            )
        return sent

    async def compute(self, missing: dict[int, list[datetime]]) -> None:
        """Roll up the missing hours from the samples and store them (one pass per run of
        consecutive hours and equipment)."""
        todo = {e: sorted(hours) for e, hours in missing.items() if hours}
        if not todo:
            return
        runs: dict[int, list[Interval]] = {
            e: merge((h, h + HOUR) for h in hours) for e, hours in todo.items()
        }
        points = await self._fetch(list(todo), merge(iv for r in runs.values() for iv in r))
        rows = []
        for eid, intervals in runs.items():
            for lo, hi in intervals:
                by_hour = usage_by_hour(lo, hi, self.sessions.get(eid, []), points.get(eid, []))
                rows += [
                    (eid, h, u.observed_s, u.executing_s, u.auto_executing_s, u.mdi_executing_s)
                    for h, u in by_hour.items()
                ]
        touched = sorted({(eid, _day(h)) for eid, hours in todo.items() for h in hours})
        async with self.conn.transaction(), self.conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO usage_hour (equipment_id, hour, observed_s, executing_s, auto_s,"
                " mdi_s) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
            await cur.execute(
                "SELECT usage_day_store(%s, %s)", ([e for e, _ in touched], [d for _, d in touched])
            )
        if not self.conn.autocommit:
            await self.conn.commit()

    async def _fetch(self, ids: list[int], ranges: list[Interval]) -> dict[int, list[StatePoint]]:
        return await self._points_from(await self._send_fetch(ids, ranges))

    async def _points_from(self, cur: psycopg.AsyncCursor[Any]) -> dict[int, list[StatePoint]]:
        """State points per equipment, in time order, from the query of ``_send_fetch``, and
        the state in force at a range's start of the series that had none in the day before
        (a second query, only then: 7 of 16 ms an enterprise went to looking for it in every
        earlier partition for all series, when a day's had it for each)."""
        rows = await cur.fetchall()
        found = [r[:4] for r in rows if r[2] is not None]
        lacking = [(r[4], r[5]) for r in rows if r[2] is None]
        if lacking:
            more = await self.conn.execute(
                "SELECT s.equipment_id, s.metric, b.ts, b.value"
                " FROM unnest(%s::bigint[], %s::timestamptz[]) q(id, a)"
                " JOIN series s ON s.id = q.id CROSS JOIN LATERAL"
                " (SELECT ts, value FROM sample_text WHERE series_id = q.id"
                "  AND ts < q.a - interval '24 hours' ORDER BY ts DESC LIMIT 1) b",
                ([i for i, _ in lacking], [a for _, a in lacking]),
            )
            found = sorted([*found, *await more.fetchall()], key=lambda r: r[2])
        out: dict[int, list[StatePoint]] = defaultdict(list)
        for eid, metric, ts, value in found:
            out[eid].append(StatePoint(ts, "mode" if metric == MODE_METRIC else "execution", value))
        return dict(out)

    async def _send_fetch(self, ids: list[int], ranges: list[Interval]) -> psycopg.AsyncCursor[Any]:
        """Ask for the state changes inside the ranges, plus the state in force at each range
        start."""
        return await self.conn.execute(
            "WITH s AS (SELECT id, equipment_id, metric FROM series"
            "  WHERE equipment_id = ANY(%(eq)s) AND metric IN (%(mode)s, %(exec)s)),"
            " r AS (SELECT * FROM unnest(%(a)s::timestamptz[], %(b)s::timestamptz[]) AS r(a, b))"
            " SELECT s.equipment_id, s.metric, t.ts, t.value, NULL::bigint, NULL::timestamptz"
            " FROM s CROSS JOIN r CROSS JOIN LATERAL"
            "  (SELECT ts, value FROM sample_text WHERE series_id = s.id AND ts >= r.a"
            "   AND ts < r.b OFFSET 0) t"  # OFFSET 0: keep the index scan per series and range
            " UNION ALL"  # a point may come twice (inside one range, before the next): harmless
            # the state in force at each range's start, looked for in the day before (that
            # day's partitions, not every partition's index as ORDER BY ts DESC LIMIT 1 alone
            # does); a series with none there comes back without it (ts null), for
            # _points_from to look further back
            " SELECT s.equipment_id, s.metric, b.ts, b.value, s.id, r.a FROM s CROSS JOIN r"
            " LEFT JOIN LATERAL (SELECT ts, value FROM sample_text WHERE series_id = s.id"
            "  AND ts < r.a AND ts >= r.a - interval '24 hours' ORDER BY ts DESC LIMIT 1) b ON true"
            " ORDER BY 3",
            {
                "eq": ids,
                "mode": MODE_METRIC,
                "exec": EXECUTION_METRIC,
                "a": [a for a, _ in ranges],
                "b": [b for _, b in ranges],
            },
        )


def subtract(xs: list[Interval], ys: list[Interval]) -> list[Interval]:
    """xs minus ys (both sorted and merged), in one pass over both."""
    out = []
    j = 0
    for a, b in xs:
        while j < len(ys) and ys[j][1] <= a:  # ends before this and every later x
            j += 1
        cursor, k = a, j
        while k < len(ys) and ys[k][0] < b:
            c, d = ys[k]
            if c > cursor:
                out.append((cursor, c))
            cursor = max(cursor, d)
            k += 1
        if cursor < b:
            out.append((cursor, b))
    return out


KEEP_LOCK = 0x706C616E7404  # one keeper at a time across ingest workers
KEEP_HOURS = 24 * 7  # hours per equipment computed in one step of a pass


async def keep_current(conn: psycopg.AsyncConnection[Any], now: datetime | None = None) -> int:
    """Store every hour of the usage roll-up that closed :data:`SETTLE` ago and is missing,
    for all equipment since its first connectivity session; returns the hours stored (0 when
    another process is at it). ``conn`` must be in autocommit mode."""
    closed_until = utc_hour((now or datetime.now(UTC)) - SETTLE)
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (KEEP_LOCK,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    try:
        stored = 0
        before: dict[int, list[datetime]] = {}
        while missing := await _missing_hours(conn, closed_until):
            if missing == before:  # no progress (hours deleted as they come): next pass
                break
            before = missing
            lo = min(h for hours in missing.values() for h in hours)
            hi = max(h for hours in missing.values() for h in hours) + HOUR
            sessions = await _sessions(conn, list(missing), lo, hi)
            await UsageReader(conn, lo, hi, sessions).compute(missing)
            stored += sum(len(h) for h in missing.values())
        return stored
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (KEEP_LOCK,))


async def _missing_hours(
    conn: psycopg.AsyncConnection[Any], closed_until: datetime
) -> dict[int, list[datetime]]:
    """Per equipment, up to :data:`KEEP_HOURS` of the oldest closed hours the roll-up lacks."""
    cur = await conn.execute(
        "WITH e AS (SELECT equipment_id AS id, date_trunc('hour', min(online_at), 'UTC') AS since"
        "  FROM connectivity_session WHERE equipment_id IS NOT NULL GROUP BY 1)"
        " SELECT e.id, e.since, u.n, u.last FROM e CROSS JOIN LATERAL"
        "  (SELECT count(*) AS n, max(hour) AS last FROM usage_hour"
        "   WHERE equipment_id = e.id AND hour >= e.since AND hour < %s) u"
        " WHERE e.since < %s",
        (closed_until, closed_until),
    )
    missing: dict[int, list[datetime]] = {}
    for eid, since, n, last in await cur.fetchall():
        expected = int((closed_until - since) / HOUR)
        if n == expected:
            continue
        if n == 0 or int((last - since) / HOUR) + 1 == n:  # a prefix is there: the rest
            first = since if n == 0 else last + HOUR
            missing[eid] = _hour_range(first, closed_until)
            continue
        got = await conn.execute(
            "SELECT hour FROM usage_hour WHERE equipment_id = %s AND hour >= %s AND hour < %s",
            (eid, since, closed_until),
        )
        have = {r[0] for r in await got.fetchall()}
        missing[eid] = [h for h in _hour_range(since, closed_until) if h not in have][:KEEP_HOURS]
    return missing


def _hour_range(first: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    while first < end and len(out) < KEEP_HOURS:
        out.append(first)
        first += HOUR
    return out


async def _sessions(
    conn: psycopg.AsyncConnection[Any], ids: list[int], start: datetime, end: datetime
) -> dict[int, Sessions]:
    cur = await conn.execute(
        "SELECT equipment_id, online_at, offline_at FROM connectivity_session"
        " WHERE equipment_id = ANY(%s) AND online_at < %s"
        " AND (offline_at IS NULL OR offline_at > %s) ORDER BY online_at",
        (ids, end, start),
    )
    out: dict[int, Sessions] = defaultdict(list)
    for eid, online, offline in await cur.fetchall():
        out[eid].append((online, offline))
    return dict(out)
