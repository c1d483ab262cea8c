"""The partner audit log: append-only, hash-chained, readable by both parties.

Each row's hash is SHA-256 over the previous row's hash and the row's canonical content (its
fields as sorted-key JSON, the time as UTC ISO 8601), so changing or deleting any row breaks the
chain from there on. Appends serialize on the row lock of a one-row chain head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection

GENESIS = "0" * 64
_FIELDS = (
    "id, at, client_id, actor_id, supplier_id, partner_id, dataset_id, grant_id, action,"
    " outcome, reason, status, rows"
)


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
    holds (a grant change commits atomically with its audit row); returns the entry's id.

    Three round trips: advance the chain head (its row lock queues concurrent appenders),
    insert the row while storing its hash in the head, commit.
    """
    if conn.autocommit:
        raise ValueError("audit appends need a connection in transaction mode")
    cur = await conn.execute("UPDATE partner_audit_head SET id = id + 1 RETURNING id, hash")
    head = await cur.fetchone()
    if head is None:
        raise RuntimeError("partner_audit_head is missing its row")
    row = {"id": head[0], "at": datetime.now(UTC), **asdict(entry)}
    digest = chain_hash(head[1], row)
    await conn.execute(
        "WITH head AS (UPDATE partner_audit_head SET hash = %(hash)s)"
        f" INSERT INTO partner_audit ({_FIELDS}, prev_hash, hash)"
        " VALUES (%(id)s, %(at)s, %(client_id)s, %(actor_id)s, %(supplier_id)s,"
        " %(partner_id)s, %(dataset_id)s, %(grant_id)s, %(action)s, %(outcome)s,"
        " %(reason)s, %(status)s, %(rows)s, %(prev_hash)s, %(hash)s)",
        {**row, "prev_hash": head[1], "hash": digest},
    )
    await conn.commit()
    return int(row["id"])


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
