"""Partner data queries with the grant's scope and granularity enforced in SQL.

Every query starts from a ``scope`` CTE that re-reads the grant (active, unexpired, this partner,
this dataset) or, for an enterprise reading its own dataset, the dataset itself; sites,
equipment, fields, the time window and the granularity all come from that row inside the query.
A grant revoked a moment ago yields an empty scope, hence no rows.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

SCOPE = """scope AS (
    SELECT d.enterprise_id AS supplier, g.site_ids, g.equipment_ids, g.fields,
           g.window_start, g.window_end, g.granularity
    FROM partner_grant g JOIN partner_dataset d ON d.id = g.dataset_id
    WHERE %(grant)s::bigint IS NOT NULL AND g.id = %(grant)s AND g.dataset_id = %(dataset)s
      AND g.partner_id = %(ent)s AND g.status = 'active' AND g.expires_at > now()
      AND d.grade <> 'core'
  UNION ALL
    SELECT d.enterprise_id, NULL::bigint[], NULL::bigint[], NULL::text[], NULL::timestamptz,
           NULL::timestamptz, d.granularity
    FROM partner_dataset d
    WHERE %(grant)s::bigint IS NULL AND d.id = %(dataset)s AND d.enterprise_id = %(ent)s
)"""

# (sample table, metric condition) per data kind
KINDS = {
    "states": ("sample_text", "sr.metric IN ('State/Mode', 'State/Execution')"),
    "counts": ("sample_num_all", "sr.metric = 'Production/PartCount'"),
    "telemetry": ("sample_num_all", "true"),  # rows and packed days
}

_ROWS = """WITH {scope},
eq AS (
    SELECT e.id, e.code, s.code AS site
    FROM scope JOIN site s ON s.enterprise_id = scope.supplier
    JOIN equipment e ON e.site_id = s.id
    WHERE (scope.site_ids IS NULL OR s.id = ANY(scope.site_ids))
      AND (scope.equipment_ids IS NULL OR e.id = ANY(scope.equipment_ids))
      AND (%(sites)s::bigint[] IS NULL OR s.id = ANY(%(sites)s))
      AND (%(equipment)s::bigint[] IS NULL OR e.id = ANY(%(equipment)s))
)
SELECT CASE WHEN scope.granularity = 'raw' THEN x.ts ELSE date_trunc('hour', x.ts) END AS bucket,
       x.series_id, eq.site, eq.code, sr.metric, scope.granularity, {value}, count(*)
FROM scope CROSS JOIN eq
JOIN series sr ON sr.equipment_id = eq.id
JOIN {table} x ON x.series_id = sr.id
WHERE {metric}
  AND (scope.fields IS NULL OR sr.metric = ANY(scope.fields))
  AND (%(fields)s::text[] IS NULL OR sr.metric = ANY(%(fields)s))
  AND x.ts >= greatest(%(start)s, scope.window_start, %(cursor_ts)s)
  AND x.ts < least(%(end)s, scope.window_end)
GROUP BY 1, 2, 3, 4, 5, 6
HAVING (CASE WHEN scope.granularity = 'raw' THEN x.ts ELSE date_trunc('hour', x.ts) END,
        x.series_id) > (%(cursor_ts)s, %(cursor_id)s)
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
    return when, series_id


async def rows(
    conn: AsyncConnection[Any],
    kind: str,
    params: dict[str, Any],
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """One page of rows, the next cursor (None at the end), and the granularity applied.

    ``params``: grant, dataset, ent, sites, equipment, fields, start, end, cursor, limit.
    """
    table, metric = KINDS[kind]
    value = _TEXT_VALUE if table == "sample_text" else _NUM_VALUE
    sql = _ROWS.format(scope=SCOPE, table=table, metric=metric, value=value)
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
    granularity = found[0][5] if found else None
    nxt = encode_cursor(found[-1][0], found[-1][1]) if len(found) == limit else None
    return out, nxt, granularity


async def indicator_window(
    conn: AsyncConnection[Any], params: dict[str, Any]
) -> tuple[int, datetime, datetime] | None:
    """(supplier, start, end): the requested window clamped to the grant's, in SQL; None when
    the grant no longer allows access."""
    cur = await conn.execute(
        f"WITH {SCOPE} SELECT supplier, greatest(%(start)s, window_start),"
        " least(%(end)s, window_end) FROM scope",
        params,
    )
    row = await cur.fetchone()
    return (row[0], row[1], row[2]) if row else None


async def timezone_of(conn: AsyncConnection[Any], enterprise_id: int) -> str:
    cur = await conn.execute(
        "SELECT timezone FROM site WHERE enterprise_id = %s ORDER BY id LIMIT 1", (enterprise_id,)
    )
    row = await cur.fetchone()
    return str(row[0]) if row else "UTC"


class ResultCache:
    """Computed indicator values by (supplier, window) for ``ttl_s`` seconds, at most
    ``size`` entries, least recently used out first. Only values are cached: the access
    decision and the window clamp run for every call."""

    def __init__(self, ttl_s: float, size: int = 1024) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()

    async def get(self, key: tuple[Any, ...], compute: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            self._entries.move_to_end(key)
            return hit[1]
        value = await compute()
        if self.ttl_s > 0:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value
