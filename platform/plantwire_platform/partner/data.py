"""Partner data queries with the grant's scope and granularity enforced in SQL.

Every query starts from a ``scope`` CTE that re-reads the grant (active, unexpired, this partner,
this dataset) or, for an enterprise reading its own dataset, the dataset itself; sites,
equipment, fields, the time window and the granularity all come from that row inside the query.
A grant revoked a moment ago yields an empty scope, hence no rows.

Aggregated rows are whole hours: the window (the request's, the grant's and a cursor's alike) is
narrowed to the whole hours inside it, and through a grant an hour shows only if it holds at
least ``k`` samples or events, so no window, cursor or sparse hour gives a raw value away.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

SCOPE = """scope AS (
    SELECT d.enterprise_id AS supplier, g.site_ids, g.equipment_ids, g.fields,
           g.window_start, g.window_end, g.granularity, %(k)s::integer AS min_n
    FROM partner_grant g JOIN partner_dataset d ON d.id = g.dataset_id
    WHERE %(grant)s::bigint IS NOT NULL AND g.id = %(grant)s AND g.dataset_id = %(dataset)s
      AND g.partner_id = %(ent)s AND g.status = 'active' AND g.expires_at > now()
      AND d.grade <> 'core'
  UNION ALL
    SELECT d.enterprise_id, NULL::bigint[], NULL::bigint[], NULL::text[], NULL::timestamptz,
           NULL::timestamptz, d.granularity, 1
    FROM partner_dataset d
    WHERE %(grant)s::bigint IS NULL AND d.id = %(dataset)s AND d.enterprise_id = %(ent)s
)"""

# (table, row condition, value type) per data kind; numeric samples are read with their packed
# days (sample_num_all); alarm and event metrics are stored as events (one per series and time,
# like samples), their name being the series' metric
KINDS = {
    "states": ("sample_text", "sr.metric IN ('State/Mode', 'State/Execution')", "text"),
    "counts": ("sample_num_all", "sr.metric = 'Production/PartCount'", "num"),
    "telemetry": ("sample_num_all", "true", "num"),
    "alarms": ("event", "x.kind IN ('alarm', 'event')", "text"),
}


def hour_of(ts: str) -> str:
    """SQL: the start of the UTC hour holding ``ts`` (whatever the session's time zone)."""
    return f"date_bin('1 hour', {ts}, timestamptz '2000-01-01 00:00:00+00')"


def hour_after(ts: str) -> str:
    """SQL: the first whole-hour boundary at or after ``ts``."""
    floor = hour_of(ts)
    return f"({floor} + CASE WHEN {floor} < {ts} THEN interval '1 hour' ELSE interval '0' END)"


_ROWS = """WITH {scope},
win AS (
    SELECT scope.*,
        CASE WHEN scope.granularity = 'raw'
             THEN greatest(%(start)s, scope.window_start, %(cursor_ts)s)
             ELSE greatest({first_hour}, {cursor_hour}) END AS lo,
        CASE WHEN scope.granularity = 'raw' THEN least(%(end)s, scope.window_end)
             ELSE {last_hour} END AS hi
    FROM scope
),
eq AS (
    SELECT e.id, e.code, s.code AS site
    FROM win JOIN site s ON s.enterprise_id = win.supplier
    JOIN equipment e ON e.site_id = s.id
    WHERE (win.site_ids IS NULL OR s.id = ANY(win.site_ids))
      AND (win.equipment_ids IS NULL OR e.id = ANY(win.equipment_ids))
      AND (%(sites)s::bigint[] IS NULL OR s.id = ANY(%(sites)s))
      AND (%(equipment)s::bigint[] IS NULL OR e.id = ANY(%(equipment)s))
)
SELECT CASE WHEN win.granularity = 'raw' THEN x.ts ELSE {bucket} END AS bucket,
       x.series_id, eq.site, eq.code, sr.metric, win.granularity, {value}, count(*)
FROM win CROSS JOIN eq
JOIN series sr ON sr.equipment_id = eq.id
JOIN {table} x ON x.series_id = sr.id
WHERE {metric}
  AND (win.fields IS NULL OR sr.metric = ANY(win.fields))
  AND (%(fields)s::text[] IS NULL OR sr.metric = ANY(%(fields)s))
  AND x.ts >= win.lo AND x.ts < win.hi
GROUP BY 1, 2, 3, 4, 5, 6, win.min_n
HAVING (CASE WHEN win.granularity = 'raw' THEN x.ts ELSE {bucket} END, x.series_id)
        > (%(cursor_ts)s, %(cursor_id)s)
   AND (win.granularity = 'raw' OR count(*) >= win.min_n)
ORDER BY 1, 2
LIMIT %(limit)s"""

_NUM_VALUE = "avg(x.value) AS value, min(x.value), max(x.value)"
_TEXT_VALUE = "(array_agg(x.value ORDER BY x.ts DESC))[1] AS value, NULL::float8, NULL::float8"

_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")

COLUMNS = ("ts", "site", "equipment", "metric", "value", "min", "max", "n")


def encode_cursor(ts: datetime, series_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts.isoformat()}|{series_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> tuple[datetime, int]:
    """(time, series id) after which a page starts; ValueError if malformed."""
    if not cursor:
        return _EPOCH, 0
    try:
        ts, sid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        when, series_id = datetime.fromisoformat(ts), int(sid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if when.tzinfo is None:
        raise ValueError("malformed cursor")
    try:
        return when.astimezone(UTC), series_id
    except OverflowError:
        raise ValueError("malformed cursor") from None


async def rows(
    conn: AsyncConnection[Any],
    kind: str,
    params: dict[str, Any],
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of rows and the next cursor (None at the end).

    ``params``: grant, dataset, ent, sites, equipment, fields, start, end (required), cursor,
    limit, k (the least number of samples of an aggregated hour shown through a grant).
    """
    table, metric, value_type = KINDS[kind]
    value = _TEXT_VALUE if value_type == "text" else _NUM_VALUE
    sql = _ROWS.format(
        scope=SCOPE,
        table=table,
        metric=metric,
        value=value,
        bucket=hour_of("x.ts"),
        first_hour=hour_after("greatest(%(start)s, scope.window_start)"),
        cursor_hour=hour_of("%(cursor_ts)s"),
        last_hour=hour_of("least(%(end)s, scope.window_end)"),
    )
    cursor_ts, cursor_id = decode_cursor(params.pop("cursor", None))
    limit = params["limit"]
    cur = await conn.execute(sql, {**params, "cursor_ts": cursor_ts, "cursor_id": cursor_id})
    found = await cur.fetchall()
    out = [
        {
            "ts": b,
            "site": site,
            "equipment": code,
            "metric": m,
            "value": v,
            "min": lo,
            "max": hi,
            "n": n,
        }
        for b, _, site, code, m, _, v, lo, hi, n in found
    ]
    nxt = encode_cursor(found[-1][0], found[-1][1]) if len(found) == limit else None
    return out, nxt


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole UTC hours inside [start, end), both in UTC (empty if start >= end)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    floor = end.replace(minute=0, second=0, microsecond=0)
    first = start.replace(minute=0, second=0, microsecond=0)
    if first < start:
        try:
            first += timedelta(hours=1)
        except OverflowError:
            return floor, floor
    return first, floor


async def timezone_of(conn: AsyncConnection[Any], enterprise_id: int) -> str:
    cur = await conn.execute(
        "SELECT timezone FROM site WHERE enterprise_id = %s ORDER BY id LIMIT 1", (enterprise_id,)
    )
    row = await cur.fetchone()
    return str(row[0]) if row else "UTC"


class IndicatorCache:
    """Computed indicator values, keyed by what they depend on: the supplier, the window, the
    formula version and thresholds, and the supplier's data versions (raised by triggers in the
    same transaction as every state sample, connectivity session or registry change; migration
    0021). A new sample therefore makes a new key, and the old value is never served again.

    Only windows that ended before the computation are kept (a window reaching into the future
    depends on the clock too). Entries also age out after ``max_age_s``, a bound for what no
    trigger sees (partitions dropped by retention). Concurrent misses of one key compute once.
    The versions are read with the access decision, the value computed after it: a change
    committed in between may already be in a value filed under the older versions, which only
    calls that read those versions (started before the change committed) can get.
    Access decisions are never cached: callers decide first, then ask for values.
    """

    def __init__(self, max_age_s: float, size: int = 1024) -> None:
        self.max_age_s, self.size = max_age_s, size
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._computing: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self.hits = self.misses = 0

    async def get(
        self, key: tuple[Any, ...], end: datetime, compute: Callable[[], Awaitable[Any]]
    ) -> Any:
        if self.max_age_s <= 0 or end > datetime.now(UTC):
            return await compute()
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.max_age_s:
            self._entries.move_to_end(key)
            self.hits += 1
            return hit[1]
        running = self._computing.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this caller was cancelled
                return await compute()  # the computing caller was: compute here
        self.misses += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        try:
            value = await compute()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            del self._computing[key]
        future.set_result(value)
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value
