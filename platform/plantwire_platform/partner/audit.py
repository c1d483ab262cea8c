"""The partner audit log: append-only, hash-chained, readable by both parties.

Each row's hash is SHA-256 over the previous row's hash and the row's canonical content (its
fields as sorted-key JSON, the time as UTC ISO 8601), so changing or deleting any row breaks the
chain from there on. Appends serialize on the row lock of a one-row chain head; data reads append
through :class:`AuditWriter`, which commits the entries of concurrent requests together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

from plantwire_platform.batching import Batcher, Unavailable

GENESIS = "0" * 64
_COLUMNS = (
    "id",
    "at",
    "client_id",
    "actor_id",
    "supplier_id",
    "partner_id",
    "dataset_id",
    "grant_id",
    "action",
    "outcome",
    "reason",
    "status",
    "rows",
)
_FIELDS = ", ".join(_COLUMNS)


@dataclass(frozen=True, slots=True)
class Entry:
    """What one audited access was; ``reason`` is empty when allowed."""

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


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes a row's hash covers, besides the previous hash."""
    content = dict(row)
    at = content["at"]
    content["at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(row)).hexdigest()


async def append(conn: AsyncConnection[Any], entry: Entry) -> int:
    """Append one entry and commit, together with anything else the connection's transaction
    holds (a grant change commits atomically with its audit row); returns the entry's id."""
    if conn.autocommit:
        raise ValueError("audit appends need a connection in transaction mode")
    [entry_id] = await _append(conn, [(entry, datetime.now(UTC))])
    await conn.commit()
    return entry_id


async def _append(conn: AsyncConnection[Any], entries: list[tuple[Entry, datetime]]) -> list[int]:
    """Append entries (with their times) in the connection's open transaction, uncommitted.

    Two statements, pipelined, whatever the number of entries: advance the chain head by that
    many ids (its row lock queues concurrent appenders, in this process or any other, until
    commit), then insert the rows (as one JSON array) while storing the last hash in the head.
    """
    async with conn.pipeline() as pipeline:
        cur = await conn.execute(
            "UPDATE partner_audit_head SET id = id + %s RETURNING id, hash", (len(entries),)
        )
        await pipeline.sync()
        head = await cur.fetchone()
        if head is None:
            raise RuntimeError("partner_audit_head is missing its row")
        prev: str = head[1]
        first = int(head[0]) - len(entries) + 1
        rows = []
        for i, (entry, at) in enumerate(entries):
            row = {"id": first + i, "at": at, **asdict(entry)}
            digest = chain_hash(prev, row)
            rows.append({**row, "at": at.isoformat(), "prev_hash": prev, "hash": digest})
            prev = digest
        await conn.execute(
            "WITH head AS (UPDATE partner_audit_head SET hash = %s)"
            f" INSERT INTO partner_audit ({_FIELDS}, prev_hash, hash)"
            f" SELECT {_FIELDS}, prev_hash, hash"
            " FROM json_populate_recordset(NULL::partner_audit, %s::json)",
            (prev, json.dumps(rows)),
        )
    return list(range(first, first + len(entries)))


class AuditUnavailable(Unavailable):
    """The audit log could not be written; the access it was to record must not happen."""


class AuditWriter(Batcher[tuple[Entry, datetime], int]):
    """Group commit for audit entries of data reads.

    Each caller of :meth:`append` waits until its entry is committed. Entries that arrive while
    a batch is being committed are written together in the next transaction (still two round
    trips and one commit for the lot), so concurrent requests share the cost of the commit and
    of the chain-head lock instead of queueing on it one by one. The chain is the same as with
    :func:`append`: consecutive ids, each hash over the previous one.
    """

    name = "audit writer"
    unavailable = AuditUnavailable
    max_batch = 1000

    async def append(self, entry: Entry) -> int:
        """Append ``entry``; returns its id once committed (raises :class:`AuditUnavailable`
        if it could not be)."""
        return await self.submit((entry, datetime.now(UTC)))

    async def process(
        self, conn: AsyncConnection[Any], items: list[tuple[Entry, datetime]]
    ) -> list[int]:
        async with conn.pipeline(), conn.transaction():  # BEGIN goes pipelined
            return await _append(conn, items)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of checking the chain: ``bad_id`` is the first row that does not fit."""

    rows: int
    bad_id: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_id is None


async def verify(conn: AsyncConnection[Any]) -> Verdict:
    """Recompute the whole chain; the first row whose id, link or hash is wrong fails it."""
    prev, expected_id, count = GENESIS, 1, 0
    async with conn.transaction(), conn.cursor(name="partner_audit_verify") as cur:
        await cur.execute(f"SELECT {_FIELDS}, prev_hash, hash FROM partner_audit ORDER BY id")
        names = [d.name for d in cur.description or ()]
        async for values in cur:
            record = dict(zip(names, values, strict=True))
            stored_prev, stored = record.pop("prev_hash"), record.pop("hash")
            count += 1
            row_id = record["id"]
            if row_id != expected_id:
                return Verdict(count, row_id, f"row {expected_id} is missing before row {row_id}")
            if stored_prev != prev:
                return Verdict(count, row_id, "previous-hash link does not match")
            if chain_hash(prev, record) != stored:
                return Verdict(count, row_id, "content does not match its hash")
            prev, expected_id = stored, row_id + 1
    return Verdict(count)


async def entries(
    conn: AsyncConnection[Any], enterprise_id: int | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """Entries where the enterprise is the caller, the supplier or the partner (all for
    ``None``), by id."""
    cur = await conn.execute(
        f"SELECT {_FIELDS}, hash FROM partner_audit WHERE id > %(after)s"
        " AND (%(ent)s::bigint IS NULL OR actor_id = %(ent)s OR supplier_id = %(ent)s"
        " OR partner_id = %(ent)s)"
        " ORDER BY id LIMIT %(limit)s",
        {"after": after, "ent": enterprise_id, "limit": limit},
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
