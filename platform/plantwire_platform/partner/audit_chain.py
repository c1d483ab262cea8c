"""The audit hash chain: keyed links, verification against the head and anchors, signed heads.

Each entry's ``hash`` is HMAC-SHA256, under a key the database does not hold, of the previous
entry's hash and the entry's canonical content, so nobody with only database access can rewrite
an entry and recompute the rest.

The chain head (the last id and hash, kept in ``partner_audit_head`` with a MAC under the same
key) is checked on every verification, so entries removed from the end are found, and so is a
head moved back over them; appenders refuse to continue a chain whose head does not match
(:mod:`plantwire_platform.partner.audit`). What a database alone cannot show is a rollback to a
state it held before (head and entries restored from a backup, or emptied): for that the head
can be exported signed with an Ed25519 key derived from the same secret (an *anchor*). Whoever
keeps anchors outside the database can later have the chain checked against them, which finds a
rollback, or a rewrite even by someone holding the key.

Nothing here knows about partners: the entries are any audited decision's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from plantwire_platform.translation import Text

GENESIS = "0" * 64
COLUMNS = (
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
    "source",
    "repeats",
    "key_id",
)
"""What an entry's link covers: every column but the two hashes."""
_ANCHOR = "plantwire-audit-head/v1"


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes an entry's link covers besides the previous hash: its content as sorted-key
    JSON, the time as UTC ISO 8601 with microseconds."""
    content = dict(row)
    content["at"] = content["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


class AuditKey:
    """The secret behind the chain: HMAC-SHA256 links, and an Ed25519 key for signed heads.

    Both are derived from one secret (``PLANTWIRE_AUDIT_KEY``), which lives with the API
    processes and the verifier, never in the database. ``key_id`` names it publicly (a hash of
    the public key), so a verifier holding another key says so instead of reporting changes.
    """

    def __init__(self, secret: str) -> None:
        root = secret.encode()
        self._mac = hmac.new(root, b"plantwire audit links v1", hashlib.sha256).digest()
        seed = hmac.new(root, b"plantwire audit heads v1", hashlib.sha256).digest()
        self._signer = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    def link(self, prev_hash: str, row: dict[str, Any]) -> str:
        """The hash of ``row`` (every column in :data:`COLUMNS`) after ``prev_hash``."""
        return hmac.new(
            self._mac, prev_hash.encode() + b"\n" + canonical(row), hashlib.sha256
        ).hexdigest()

    def head_mac(self, head_id: int, head_hash: str) -> str:
        """The MAC binding the head's id and hash."""
        text = f"head\n{head_id}\n{head_hash}".encode()
        return hmac.new(self._mac, text, hashlib.sha256).hexdigest()

    def head_matches(self, head_id: int, head_hash: str, mac: str) -> bool:
        """Whether a head is one this key wrote (or the empty chain's, which has no MAC)."""
        if (head_id, head_hash, mac) == (0, GENESIS, ""):
            return True
        return hmac.compare_digest(mac, self.head_mac(head_id, head_hash))

    def sign(self, head: dict[str, Any]) -> dict[str, Any]:
        """``head`` (id, hash, signed_at) as a signed anchor."""
        anchor = {"id": head["id"], "hash": head["hash"], "signed_at": head["signed_at"]}
        anchor |= {"key_id": self.key_id, "public_key": self.public_key}
        signature = self._signer.sign(_anchor_bytes(anchor))
        return anchor | {"signature": base64.b64encode(signature).decode()}


def _anchor_bytes(anchor: dict[str, Any]) -> bytes:
    signed = {k: anchor[k] for k in ("id", "hash", "signed_at", "key_id")}
    return f"{_ANCHOR}\n".encode() + json.dumps(signed, sort_keys=True).encode()


def anchor_signed(anchor: dict[str, Any], public_key: str) -> bool:
    """Whether ``anchor`` carries a valid signature by the holder of ``public_key`` (base64),
    checkable by anyone: partners keep anchors and the platform's public key."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(anchor["signature"]), _anchor_bytes(anchor))
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Anchor:
    """A head someone kept: the chain must still hold entry ``id`` with ``hash``."""

    id: int
    hash: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of checking the chain: ``bad_id`` is the first entry that does not fit (or
    the head's id when the chain's end does not match it), ``problem`` why (in the API
    catalogue's words; ``str()`` its English)."""

    rows: int
    head_id: int = 0
    head_hash: str = GENESIS
    bad_id: int | None = None
    problem: Text | None = None
    anchors: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


async def head(conn: AsyncConnection[Any]) -> tuple[int, str, str]:
    """The chain head: the last id, its hash, and the MAC binding them."""
    cur = await conn.execute("SELECT id, hash, mac FROM partner_audit_head")
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("partner_audit_head is missing its row")
    return int(row[0]), str(row[1]), str(row[2])


async def signed_head(conn: AsyncConnection[Any], key: AuditKey) -> dict[str, Any]:
    """The current head, signed: an anchor to keep outside the database."""
    head_id, head_hash, _ = await head(conn)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return key.sign({"id": head_id, "hash": head_hash, "signed_at": now})


async def verify(
    conn: AsyncConnection[Any], key: AuditKey, anchors: list[Anchor] | tuple[Anchor, ...] = ()
) -> Verdict:
    """Recompute the whole chain in one snapshot (on a connection outside a transaction): ids
    1, 2, 3... without gaps up to the head, each link over the previous hash, each keyed with
    ``key``; the last entry equal to the head, whose MAC must match; every anchor still in the
    chain."""
    pending = {a.id: a.hash for a in anchors}
    prev, expected_id, count = GENESIS, 1, 0

    def broken(row_id: int | None, problem: Text) -> Verdict:
        return Verdict(count, head_id, head_hash, row_id, problem)

    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("verification takes a snapshot of its own: commit first")
    async with conn.transaction(), conn.cursor(name="partner_audit_verify") as cur:
        # one snapshot for the head and the entries (appends commit both together)
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        head_id, head_hash, head_mac = await head(conn)
        columns = ", ".join(COLUMNS)
        await cur.execute(f"SELECT {columns}, prev_hash, hash FROM partner_audit ORDER BY id")
        async for values in cur:
            row = dict(zip((*COLUMNS, "prev_hash", "hash"), values, strict=True))
            stored_prev, stored = row.pop("prev_hash"), row.pop("hash")
            count += 1
            row_id = row["id"]
            if row_id > head_id:
                return broken(row_id, Text("chain.beyond_head", entry=row_id, head=head_id))
            if row_id != expected_id:
                return broken(row_id, Text("chain.missing", entry=expected_id, before=row_id))
            if stored_prev != prev:
                return broken(row_id, Text("chain.link"))
            if row["key_id"] != key.key_id:
                return broken(row_id, Text("chain.key", found=row["key_id"], expected=key.key_id))
            if key.link(prev, row) != stored:
                return broken(row_id, Text("chain.content"))
            if pending.get(row_id, stored) != stored:
                return broken(row_id, Text("chain.anchor", entry=row_id))
            pending.pop(row_id, None)
            prev, expected_id = stored, row_id + 1
    last = expected_id - 1
    if last != head_id:
        return broken(head_id, Text("chain.ends", last=last, head=head_id))
    if prev != head_hash:
        return broken(head_id, Text("chain.head_differs", last=last))
    if not key.head_matches(head_id, head_hash, head_mac):
        return broken(head_id, Text("chain.head_mac"))
    if pending:
        first = min(pending)
        return broken(first, Text("chain.anchor_beyond", anchor=first, last=last))
    return Verdict(count, head_id, head_hash, anchors=sorted(a.id for a in anchors))
