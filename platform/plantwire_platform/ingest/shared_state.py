"""Sparkplug host state shared by all ingest workers through the database.

Births are stored with their alias tables (``sparkplug_birth``) the moment a worker reads them,
so another worker taking the data of the same device resolves it from the database; node rows
(``sparkplug_node``) hold the current bdSeq, the merged seq ledger and the last rebirth request,
which makes "one rebirth request per problem" hold across workers. Sessions, staleness,
lifecycle events and the end of state intervals follow births and deaths here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg

from plantwire_bus.payload import DataType
from plantwire_bus.topics import MessageType
from plantwire_platform.ingest.admission import Roster, load_roster
from plantwire_platform.ingest.batch import Target, ms_to_datetime, row_prefix
from plantwire_platform.ingest.host import (
    Birth,
    Death,
    Generation,
    ValueProblem,
    birth_value,
    flags_for,
    kind_of,
)
from plantwire_platform.ingest.node_clock import NodeTrack, node_death_time
from plantwire_platform.ingest.sequence import Ledger, SeqEntry, replay

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # group, edge node, device ('' for the node)
P = ParamSpec("P")
R = TypeVar("R")


def serialized(
    method: Callable[Concatenate[SharedState, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SharedState, P], Coroutine[Any, Any, R]]:
    """One operation at a time on the shared state's connection (tasks share it)."""

    async def run(self: SharedState, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with self.lock:
            return await method(self, *args, **kwargs)

    return run


# The equipment a (group, edge node, device) is: only the one its site's gateway reads.
_EQUIPMENT = (
    "(SELECT e.id FROM equipment e JOIN site s ON s.id = e.site_id"
    " JOIN enterprise x ON x.id = s.enterprise_id WHERE x.code = {g} AND e.code = {d}"
    " AND s.edge_node_id = {n} ORDER BY e.id LIMIT 1)"
)
_BIRTH_COLUMNS = (
    "id, group_id, edge_node_id, device_id, birth_ts, death_ts, names, aliases, series_ids,"
    " datatypes, transient, worker"
)


def generation_from_row(row: tuple[Any, ...]) -> tuple[Key, Generation]:
    """A birth row (``_BIRTH_COLUMNS``) as the alias tables data is resolved with."""
    bid, g, n, d, birth_ts, death_ts, names, aliases, series_ids, datatypes, transient, who = row
    by_alias: dict[int, Target] = {}
    by_name: dict[str, Target] = {}
    for name, alias, sid, number, skip in zip(
        names, aliases, series_ids, datatypes, transient, strict=True
    ):
        datatype = DataType(number)
        kind = kind_of(datatype)
        if kind is None:
            continue
        flags = flags_for(name, transient=bool(skip))
        target = Target(int(sid), datatype, kind, flags, row_prefix(int(sid)))
        by_name[name] = target
        if alias is not None:
            by_alias[int(alias)] = target
    return (g, n, d), Generation(int(bid), int(birth_ts), by_alias, by_name, death_ts, who)


class SharedState:
    """The shared host state, over one autocommit connection of its own."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], worker: str) -> None:
        self.conn = conn
        self.worker = worker
        self.last_change = 0
        self.lock = asyncio.Lock()
        self.open_holes: set[tuple[str, str]] = set()  # nodes whose seq hole awaits its timeout

    async def start(self) -> None:
        cur = await self.conn.execute("SELECT coalesce(max(change_id), 0) FROM sparkplug_birth")
        row = await cur.fetchone()
        self.last_change = int(row[0]) if row else 0

    @serialized
    async def roster(self) -> Roster:
        """The registered edge nodes and their devices."""
        return await load_roster(self.conn)

    @serialized
    async def nodes(self) -> set[tuple[str, str]]:
        """Every edge node whose birth the host has stored, registered now or not."""
        cur = await self.conn.execute("SELECT group_id, edge_node_id FROM sparkplug_node")
        return {(g, n) for g, n in await cur.fetchall()}

    # -- births ----------------------------------------------------------------------------
    @serialized
    async def store_birth(self, birth: Birth) -> Generation:
        """Register a birth's series and alias table, open its session; returns its alias
        tables. Storing the same birth twice changes nothing."""
        g, n, d = birth.route.group_id, birth.route.edge_node_id, birth.route.device_id
        at = ms_to_datetime(birth.ts)
        names = [m.name or "" for m in birth.metrics]
        conn = self.conn
        async with conn.transaction():
            ids = await self._series(g, n, d, birth)
            cur = await conn.execute(
                "INSERT INTO sparkplug_birth AS b (group_id, edge_node_id, device_id, birth_ts,"
                " bd_seq, names, aliases, series_ids, datatypes, transient, worker)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (group_id, edge_node_id, device_id, birth_ts) DO UPDATE SET"
                " names = excluded.names, aliases = excluded.aliases,"
                " series_ids = excluded.series_ids, datatypes = excluded.datatypes,"
                " transient = excluded.transient,"
                " change_id = nextval('sparkplug_change_seq')"
                f" RETURNING {_BIRTH_COLUMNS}",
                (
                    g,
                    n,
                    d,
                    birth.ts,
                    birth.bd_seq,
                    names,
                    [m.alias for m in birth.metrics],
                    [ids[name] for name in names],
                    [int(m.datatype or 0) for m in birth.metrics],
                    [m.is_transient for m in birth.metrics],
                    self.worker,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            await conn.execute(
                "UPDATE series SET stale_since = NULL"
                " WHERE id = ANY(%s) AND stale_since IS NOT NULL",
                (list(ids.values()),),
            )
            if birth.route.kind is MessageType.NBIRTH:
                await self._node_birth(birth, at)
            await self._open_session(g, n, d, at)
            await self._event(
                "node_birth" if not d else "device_birth", g, n, d, at, str(birth.bd_seq or "")
            )
        return generation_from_row(row)[1]

    async def _series(self, g: str, n: str, d: str, birth: Birth) -> dict[str, int]:
        names = [m.name or "" for m in birth.metrics]
        types = [int(m.datatype or 0) for m in birth.metrics]
        equipment = _EQUIPMENT.format(g="%(g)s", n="%(n)s", d="%(d)s")
        await self.conn.execute(
            "INSERT INTO series AS s (group_id, edge_node_id, device_id, metric, datatype,"
            f" equipment_id) SELECT %(g)s, %(n)s, %(d)s, k.m, k.t, {equipment}"
            " FROM unnest(%(names)s::text[], %(types)s::smallint[]) AS k(m, t) ORDER BY k.m"
            " ON CONFLICT (group_id, edge_node_id, device_id, metric) DO UPDATE"
            " SET datatype = excluded.datatype WHERE s.datatype <> excluded.datatype",
            {"g": g, "n": n, "d": d, "names": names, "types": types},
        )
        cur = await self.conn.execute(
            "SELECT metric, id FROM series WHERE group_id = %s AND edge_node_id = %s"
            " AND device_id = %s AND metric = ANY(%s)",
            (g, n, d, names),
        )
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def _node_birth(self, birth: Birth, at: datetime) -> None:
        g, n = birth.route.group_id, birth.route.edge_node_id
        await self.conn.execute(
            "INSERT INTO sparkplug_node AS x (group_id, edge_node_id, bd_seq, birth_ts, online,"
            " born_at, clock_rate) VALUES (%s, %s, %s, %s, true, now(), %s)"
            " ON CONFLICT (group_id, edge_node_id) DO UPDATE SET bd_seq = excluded.bd_seq,"
            " birth_ts = excluded.birth_ts, born_at = now(), online = true,"
            " clock_rate = excluded.clock_rate"
            " WHERE x.birth_ts IS NULL OR x.birth_ts <= excluded.birth_ts",
            (g, n, birth.bd_seq, birth.ts, birth.clock_rate),
        )
        # Devices are reborn after their node: sessions still open from before end here.
        await self.conn.execute(
            "UPDATE connectivity_session SET offline_at = greatest(%s, online_at)"
            " WHERE group_id = %s AND edge_node_id = %s AND device_id <> ''"
            " AND offline_at IS NULL AND online_at < %s",
            (at, g, n, at),
        )

    async def _open_session(self, g: str, n: str, d: str, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE connectivity_session SET offline_at = %s WHERE group_id = %s"
            " AND edge_node_id = %s AND device_id = %s AND offline_at IS NULL AND online_at < %s",
            (at, g, n, d, at),
        )
        equipment = _EQUIPMENT.format(g="%(g)s", n="%(n)s", d="%(d)s")
        await self.conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            f" online_at) SELECT %(g)s, %(n)s, %(d)s, {equipment}, %(at)s"
            " WHERE NOT EXISTS (SELECT 1 FROM connectivity_session WHERE group_id = %(g)s"
            "  AND edge_node_id = %(n)s AND device_id = %(d)s AND offline_at IS NULL"
            "  AND online_at > %(at)s)"
            " ON CONFLICT DO NOTHING",
            {"g": g, "n": n, "d": d, "at": at},
        )

    # -- deaths ----------------------------------------------------------------------------
    @serialized
    async def record_death(self, death: Death, track: NodeTrack | None = None) -> int | None:
        """Close sessions, mark series stale, end state intervals; returns the death's time,
        None for a stale NDEATH (the Will of a connection the node has replaced since). An
        NDEATH is placed on the node's time line (:mod:`.node_clock`) from ``track``, what
        this worker saw last of the node, or else from the node's birth as stored."""
        g, n, d = death.route.group_id, death.route.edge_node_id, death.route.device_id
        ts = death.ts
        conn = self.conn
        async with conn.transaction():
            if not d:
                cur = await conn.execute(
                    "INSERT INTO sparkplug_node AS x (group_id, edge_node_id, death_bd_seq,"
                    " died_at) VALUES (%s, %s, %s, now())"
                    " ON CONFLICT (group_id, edge_node_id) DO UPDATE"
                    " SET death_bd_seq = excluded.death_bd_seq, died_at = now(),"
                    " online = CASE WHEN excluded.death_bd_seq IS NULL OR x.bd_seq IS NULL"
                    "  OR x.bd_seq = excluded.death_bd_seq THEN false ELSE x.online END"
                    " RETURNING bd_seq, birth_ts, clock_rate,"
                    " (extract(epoch FROM born_at) * 1000)::bigint",
                    (g, n, death.bd_seq),
                )
                row = await cur.fetchone()
                current = row[0] if row else None
                if death.bd_seq is not None and current is not None and current != death.bd_seq:
                    return None
                if row is not None:
                    ts = node_death_time(death.ts, row[1], row[2], row[3], track)
            at = ms_to_datetime(ts)
            scope = "device_id = %(d)s" if d else "true"
            params = {"g": g, "n": n, "d": d, "at": at, "ts": ts}
            await conn.execute(
                "UPDATE sparkplug_birth SET death_ts = %(ts)s,"
                " change_id = nextval('sparkplug_change_seq')"
                f" WHERE group_id = %(g)s AND edge_node_id = %(n)s AND {scope}"
                " AND death_ts IS NULL AND birth_ts <= %(ts)s",
                params,
            )
            await conn.execute(
                "UPDATE connectivity_session SET offline_at = greatest(%(at)s, online_at)"
                f" WHERE group_id = %(g)s AND edge_node_id = %(n)s AND {scope}"
                " AND offline_at IS NULL",
                params,
            )
            await conn.execute(
                "UPDATE series SET stale_since = %(at)s"
                f" WHERE group_id = %(g)s AND edge_node_id = %(n)s AND {scope}"
                " AND stale_since IS NULL",
                params,
            )
            await conn.execute(
                "UPDATE state_interval si SET end_at = greatest(%(at)s, si.start_at) FROM series s"
                f" WHERE s.id = si.series_id AND s.group_id = %(g)s AND s.edge_node_id = %(n)s"
                f" AND {scope.replace('device_id', 's.device_id')} AND si.end_at IS NULL",
                params,
            )
            await self._event("device_death" if d else "node_death", g, n, d, at, None)
        return ts

    # -- reading the shared state ------------------------------------------------------------
    @serialized
    async def load(self, key: Key, keep: int = 3) -> list[Generation]:
        cur = await self.conn.execute(
            f"SELECT {_BIRTH_COLUMNS} FROM sparkplug_birth WHERE group_id = %s"
            " AND edge_node_id = %s AND device_id = %s ORDER BY birth_ts DESC, id DESC LIMIT %s",
            (*key, keep),
        )
        return [generation_from_row(r)[1] for r in reversed(await cur.fetchall())]

    @serialized
    async def changes(self) -> list[tuple[Key, Generation]]:
        """Births stored or ended by any worker since the last call."""
        cur = await self.conn.execute(
            f"SELECT {_BIRTH_COLUMNS}, change_id FROM sparkplug_birth WHERE change_id > %s"
            " ORDER BY change_id",
            (self.last_change,),
        )
        rows = await cur.fetchall()
        if rows:
            self.last_change = int(rows[-1][-1])
        return [generation_from_row(r[:-1]) for r in rows]

    # -- rebirths and sequence numbers -----------------------------------------------------
    @serialized
    async def claim_rebirth(self, g: str, n: str, holdoff_s: float, reason: str) -> bool:
        """True if this worker should ask (g, n) for a rebirth now: one asker per holdoff, unless
        the node was reborn since the last request (then its new gap is asked about at once,
        tck-id-operational-behavior-host-reordering-rebirth)."""
        cur = await self.conn.execute(
            "INSERT INTO sparkplug_node AS x (group_id, edge_node_id, rebirth_requested_at,"
            " rebirth_requests) VALUES (%s, %s, now(), 1)"
            " ON CONFLICT (group_id, edge_node_id) DO UPDATE SET rebirth_requested_at = now(),"
            " rebirth_requests = x.rebirth_requests + 1"
            " WHERE x.rebirth_requested_at IS NULL"
            "  OR x.rebirth_requested_at < now() - make_interval(secs => %s)"
            "  OR x.born_at > x.rebirth_requested_at"  # reborn since: a new gap is news
            " RETURNING 1",
            (g, n, holdoff_s),
        )
        claimed = await cur.fetchone() is not None
        if claimed:
            await self._event("rebirth_request", g, n, "", datetime.now(UTC), reason[:200])
        return claimed

    @serialized
    async def merge_seqs(
        self, seqs: Mapping[tuple[str, str], Sequence[SeqEntry]], wait_s: float
    ) -> list[tuple[str, str]]:
        """Apply each node's seqs and NBIRTHs to its ledger; returns the nodes with a gap.
        Nodes whose ledger keeps a hole open are in :attr:`open_holes` afterwards: merged
        again with no entries once ``wait_s`` has passed, their hole becomes a gap if it is
        still there (the reorder timer)."""
        gaps = []
        for (g, n), entries in sorted(seqs.items()):
            async with self.conn.transaction():
                cur = await self.conn.execute(
                    "SELECT seq_birth_ts, seq_expected, seq_ahead,"
                    " extract(epoch FROM seq_hole_since), extract(epoch FROM now())"
                    " FROM sparkplug_node WHERE group_id = %s AND edge_node_id = %s FOR UPDATE",
                    (g, n),
                )
                row = await cur.fetchone()
                if row is None:
                    continue  # no birth yet: nothing to follow
                ahead = int.from_bytes(row[2], "big") if row[2] else 0
                hole = float(row[3]) if row[3] is not None else None
                ledger = Ledger(row[0], row[1], ahead, hole)
                new, found = replay(ledger, entries, float(row[4]), wait_s)
                if new.hole_since is None:
                    self.open_holes.discard((g, n))
                else:
                    self.open_holes.add((g, n))
                if new == ledger and not found:
                    continue
                await self.conn.execute(
                    "UPDATE sparkplug_node SET seq_birth_ts = %s, seq_expected = %s,"
                    " seq_ahead = %s, seq_hole_since = to_timestamp(%s),"
                    " seq_gaps = seq_gaps + %s WHERE group_id = %s AND edge_node_id = %s",
                    (
                        new.birth_ts,
                        new.expected,
                        new.ahead.to_bytes(16, "big") if new.ahead else b"",
                        new.hole_since,
                        found,
                        g,
                        n,
                    ),
                )
                if found:
                    await self._event("seq_gap", g, n, "", datetime.now(UTC), str(found))
                    gaps.append((g, n))
        return gaps

    async def _event(
        self, kind: str, g: str, n: str, d: str, at: datetime, value: str | None
    ) -> None:
        await self.conn.execute(
            "INSERT INTO event (ts, group_id, edge_node_id, device_id, kind, value)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (at, g, n, d, kind, value),
        )


def birth_samples(
    birth: Birth, gen: Generation, refused: list[ValueProblem] | None = None
) -> list[tuple[Target, int, Any, int]]:
    """The values a birth carries, as samples (target, ts, value, ordinal: a current value
    that was not the first of its millisecond says which it was); values that cannot be
    stored are left out and added to ``refused``."""
    out = []
    for m in birth.metrics:
        target = gen.by_name.get(m.name or "")
        if target is None:
            continue
        try:
            value = birth_value(m)
        except ValueProblem as exc:
            if refused is not None:
                refused.append(exc)
            continue
        out.append((target, m.timestamp or birth.ts, value, m.ordinal))
    return out
