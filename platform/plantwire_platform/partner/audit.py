"""Audit recording: append-only, keyed hash chain, readable by the parties of each entry.

Every audited decision is one :class:`Entry`. Appends take the next ids from the chain head
(whose row lock queues appenders in every process until commit), link each entry to the
previous one with the :class:`~plantwire_platform.partner.audit_chain.AuditKey`, and write
them through two database functions that refuse anything that does not continue the chain
(migration 0022), so the tables can belong to a role the application cannot use to alter them.
Decisions of requests that arrive together commit together (:class:`AuditWriter`); a change
and its entry commit in one transaction (:func:`append`). Verification, anchors and signed
heads: :mod:`plantwire_platform.partner.audit_chain`.

Nothing here knows about partners beyond the column names: any API can record its decisions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql

from plantwire_platform.batching import Batcher, Unavailable
from plantwire_platform.partner.audit_chain import COLUMNS, AuditKey
from plantwire_platform.translation import Text

FLOODS = (401, 429)
"""Refusals that come in floods: identical ones committed together become one entry with
their number in ``repeats``."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One audited decision. ``outcome``: allowed, denied (``reason`` says why) or failed (the
    platform erred); ``client_id`` is the caller, or the client id claimed by a caller that could
    not be identified ('' if none); ``source`` the address the request came from."""

    client_id: str
    actor_id: int | None
    supplier_id: int | None
    partner_id: int | None
    dataset_id: int | None
    grant_id: int | None
    action: str
    outcome: str
    reason: str
    status: int
    rows: int = 0
    source: str = ""
    repeats: int = 1


async def append(conn: AsyncConnection[Any], key: AuditKey, entry: Entry) -> int:
    """Append one entry and commit, together with anything else the connection's transaction
    holds (a change commits atomically with its entry); returns the entry's id."""
    if conn.autocommit:
        raise ValueError("audit appends need a connection in transaction mode")
    [entry_id] = await _append(conn, key, [(entry, datetime.now(UTC))])
    await conn.commit()
    return entry_id


async def _append(
    conn: AsyncConnection[Any], key: AuditKey, entries: list[tuple[Entry, datetime]]
) -> list[int]:
    """Append entries (with their times) in the connection's open transaction, uncommitted;
    returns each one's id (identical flood refusals share one). Two pipelined round trips,
    whatever the number of entries."""
    rows, slot = _coalesce(entries)
    async with conn.pipeline() as pipeline:
        cur = await conn.execute("SELECT * FROM partner_audit_reserve(%s)", (len(rows),))
        await pipeline.sync()
        reserved = await cur.fetchone()
        if reserved is None:
            raise RuntimeError("partner_audit_head is missing its row")
        first, prev, mac, last = int(reserved[0]), str(reserved[1]), str(reserved[2]), reserved[3]
        if not key.head_matches(first - 1, prev, mac) or (first > 1 and last != prev):
            raise ChainBroken(Text("audit.head_changed", entry=first - 1))
        records = []
        for i, (entry, at) in enumerate(rows):
            row = {"id": first + i, "at": at, **asdict(entry), "key_id": key.key_id}
            digest = key.link(prev, {c: row[c] for c in COLUMNS})
            records.append({**row, "at": at.isoformat(), "prev_hash": prev, "hash": digest})
            prev = digest
        mac = key.head_mac(first + len(rows) - 1, prev)
        await conn.execute("SELECT partner_audit_write(%s::json, %s)", (json.dumps(records), mac))
    return [first + s for s in slot]


def _coalesce(
    entries: list[tuple[Entry, datetime]],
) -> tuple[list[tuple[Entry, datetime]], list[int]]:
    """The rows to write and, for each entry, its row: identical refusals of :data:`FLOODS`
    share one row (the first one's time, their number in ``repeats``)."""
    rows: list[tuple[Entry, datetime]] = []
    slot: list[int] = []
    seen: dict[Entry, int] = {}
    for entry, at in entries:
        if entry.status in FLOODS and entry.outcome == "denied":
            i = seen.get(entry)
            if i is not None:
                kept, first_at = rows[i]
                rows[i] = (replace(kept, repeats=kept.repeats + entry.repeats), first_at)
                slot.append(i)
                continue
            seen[entry] = len(rows)
        slot.append(len(rows))
        rows.append((entry, at))
    return rows, slot


class AuditUnavailable(Unavailable):
    """The audit log could not be written; the access it was to record must not happen."""


class ChainBroken(Exception):
    """The chain's head does not match what this key wrote: someone changed the log. ``text``
    says so in the API's catalogue; ``str()`` is its English."""

    def __init__(self, text: Text) -> None:
        super().__init__(str(text))
        self.text = text


class AuditWriter(Batcher[tuple[Entry, datetime], int]):
    """Group commit for audit entries.

    Each caller of :meth:`append` waits until its entry is committed. Entries that arrive while
    a batch is being committed are written together in the next transaction (still two round
    trips and one commit for the lot), so concurrent requests share the cost of the commit and
    of the chain-head lock instead of queueing on it one by one. The chain is the same as with
    :func:`append`: consecutive ids, each link over the previous one.
    """

    name = "audit writer"
    unavailable = AuditUnavailable
    max_batch = 1000

    def __init__(self, key: AuditKey | None, max_batch: int | None = None) -> None:
        super().__init__(max_batch)
        self.key = key

    async def append(self, entry: Entry) -> int:
        """Append ``entry``; returns its id once committed (raises :class:`AuditUnavailable`
        if it could not be)."""
        if self.key is None:
            raise AuditUnavailable("no audit key is configured (PLANTWIRE_AUDIT_KEY)")
        return await self.submit((entry, datetime.now(UTC)))

    async def process(
        self, conn: AsyncConnection[Any], items: list[tuple[Entry, datetime]]
    ) -> list[int]:
        assert self.key is not None
        async with conn.pipeline(), conn.transaction():  # BEGIN goes pipelined
            return await _append(conn, self.key, items)


_READ = ", ".join(COLUMNS)


async def entries(
    conn: AsyncConnection[Any],
    enterprise_id: int | None,
    after: int,
    limit: int,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Entries where the enterprise is the caller, the supplier or the partner (all for
    ``None``), by id: after ``after``, or with ``newest_first`` before it (0: from the
    newest)."""
    if newest_first:
        bound, order = "(%(after)s = 0 OR id < %(after)s)", "id DESC"
    else:
        bound, order = "id > %(after)s", "id"
    cur = await conn.execute(
        f"SELECT {_READ}, hash FROM partner_audit WHERE {bound}"
        " AND (%(ent)s::bigint IS NULL OR actor_id = %(ent)s OR supplier_id = %(ent)s"
        f" OR partner_id = %(ent)s) ORDER BY {order} LIMIT %(limit)s",
        {"after": after, "ent": enterprise_id, "limit": limit},
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


class SealRefused(Exception):
    """The roles given cannot keep the audit log out of the application's reach."""


async def seal(conn: AsyncConnection[Any], owner: str, app: str) -> None:
    """Give the audit tables and their functions to the role ``owner`` and leave the
    application's role ``app`` only reading them and appending through the functions: it can
    no longer change, delete, truncate or reorder entries, move the head, disable the
    append-only trigger or drop the tables. Run by a database administrator (superuser, or a
    member of ``owner`` owning the objects); commits. Refused when ``app`` could still get
    around it: a superuser, a member of ``owner``, or an owner of the tables' schema (which may
    drop them)."""
    cur = await conn.execute(
        "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = %(app)s),"
        " (SELECT rolname FROM pg_roles WHERE rolname = %(owner)s),"
        " pg_has_role(%(app)s, %(owner)s, 'MEMBER'),"
        " (SELECT pg_has_role(%(app)s, n.nspowner, 'MEMBER') FROM pg_class c"
        "  JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE c.oid = 'partner_audit'::regclass)",
        {"app": app, "owner": owner},
    )
    found = await cur.fetchone()
    if found is None or found[0] is None or found[1] is None:
        raise SealRefused(f"both roles must exist ({owner!r}, {app!r})")
    superuser, _, member, schema_owner = found
    if superuser:
        raise SealRefused(f"{app!r} is a superuser: nothing keeps it out")
    if owner == app or member:
        raise SealRefused(f"{app!r} is {owner!r} or a member of it")
    if schema_owner:
        raise SealRefused(
            f"{app!r} owns the schema of the audit tables (perhaps as the database's owner) "
            "and could drop them: give the schema to another role first"
        )
    o, a = sql.Identifier(owner), sql.Identifier(app)
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in _TABLES)
    append_fns = sql.SQL(", ").join(sql.SQL(f) for f in _APPEND)
    every_fn = sql.SQL(", ").join(sql.SQL(f) for f in (*_APPEND, _TRIGGER))
    statements = [
        *(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(t), o) for t in _TABLES),
        *(sql.SQL(f"ALTER FUNCTION {f} OWNER TO {{}}").format(o) for f in (*_APPEND, _TRIGGER)),
        sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(tables, a),
        sql.SQL("GRANT SELECT ON {} TO {}").format(tables, a),
        sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC, {}").format(every_fn, a),
        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(append_fns, a),
    ]
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)


_TABLES = ("partner_audit", "partner_audit_head", "partner_audit_unkeyed")
_APPEND = ("partner_audit_reserve(integer)", "partner_audit_write(json, text)")
_TRIGGER = "partner_audit_append_only()"
