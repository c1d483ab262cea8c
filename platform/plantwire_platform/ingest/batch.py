"""One database write's worth of ingest: binary COPY rows and side rows.

Samples are appended as ready-made PostgreSQL binary COPY rows: no per-sample objects, no
datetimes (a timestamp is ``(ms - 2000-01-01 in ms) * 1000`` microseconds). Each data message
also records the time span of its samples, from which the writer tells the roll-ups about
samples arriving for minutes already rolled up.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from plantwire_bus.payload import DataType
from plantwire_platform.ingest.sequence import SeqEntry

NUM, BOOL, TEXT = 0, 1, 2
KINDS = ("num", "bool", "text")
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp zero
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
MINUTE_MS = 60_000
LATE_MS = 5_000  # samples older than this at write time are announced to the roll-ups

_TS_DOUBLE = struct.Struct(">qid")  # ts, value length 8, value
NUM_ROW = struct.Struct(">18sqid")  # row prefix (see row_prefix), ts, value length 8, value
_TS_NULL = struct.Struct(">qi")  # ts, -1
_TS_LEN = struct.Struct(">qi")  # ts, value length
_TS = struct.Struct(">q")
_BOOL = (b"\x00\x00\x00\x01\x00", b"\x00\x00\x00\x01\x01")


class Target(NamedTuple):
    """Where a metric's samples go; ``prefix`` is its COPY row start (see :func:`row_prefix`)."""

    series_id: int
    datatype: DataType
    kind: int  # NUM, BOOL or TEXT
    flags: int
    prefix: bytes


def row_prefix(series_id: int) -> bytes:
    """The start of a 3-column COPY row for ``series_id``: field count, id, ts length."""
    sid = series_id.to_bytes(8, "big", signed=True)
    return b"\x00\x03\x00\x00\x00\x08" + sid + b"\x00\x00\x00\x08"


def pg_micros(ts_ms: int) -> int:
    return (ts_ms - PG_EPOCH_MS) * 1000


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_datetime(ms: int) -> datetime:
    """Exact (no float rounding) UTC datetime of a millisecond timestamp."""
    return _UNIX_EPOCH + timedelta(milliseconds=ms)


@dataclass(slots=True)
class DeadLetter:
    topic: str
    reason: str
    detail: str
    payload: bytes


class Problems:
    """What went wrong in one message: one dead letter per message, however many metrics."""

    __slots__ = ("counts", "first", "unknown_names")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}
        self.unknown_names: list[str] = []

    def add(self, reason: str, detail: str) -> None:
        n = self.counts.get(reason)
        if n is None:
            self.counts[reason] = 1
            self.first[reason] = detail[:200]
        else:
            self.counts[reason] = n + 1

    def unknown(self, name: str) -> None:
        if len(self.unknown_names) < 10:
            self.unknown_names.append(name[:80])
        self.add("unknown_metric", "not in the birth")

    def __bool__(self) -> bool:
        return bool(self.counts)

    @property
    def reason(self) -> str:
        return next(iter(self.counts))

    def detail(self) -> str:
        parts = []
        for reason, n in self.counts.items():
            text = self.first[reason]
            if reason == "unknown_metric":
                text = "not in the birth: " + ", ".join(self.unknown_names)
            parts.append(f"{reason} x{n}: {text}")
        return "; ".join(parts)[:2000]


@dataclass(slots=True)
class Batch:
    """Rows for one transaction, and the messages it acknowledges."""

    bodies: tuple[bytearray, bytearray, bytearray] = field(
        default_factory=lambda: (bytearray(), bytearray(), bytearray())
    )
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # birth, min ts, max ts
    states: dict[int, int] = field(default_factory=dict)  # series id -> earliest ts (ms)
    events: list[tuple[int, int, str | None]] = field(default_factory=list)  # sid, µs, value
    dead_letters: list[DeadLetter] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)  # to acknowledge after the commit
    seqs: dict[tuple[str, str], list[SeqEntry]] = field(default_factory=dict)
    rebirths: dict[tuple[str, str], str] = field(default_factory=dict)  # node -> why
    first_received: float = 0.0  # monotonic time the first message arrived
    oldest_source_ms: int = 0  # earliest payload timestamp in the batch

    def add_seq(
        self, node: tuple[str, str], birth_ts: int | None, seq: int | None, is_birth: bool = False
    ) -> None:
        """A node's message seq (or its NBIRTH), for the seq ledger, in the order received."""
        self.seqs.setdefault(node, []).append((birth_ts, seq, is_birth))

    def mark(self) -> tuple[int, ...]:
        """Where the rows are now, for :meth:`rollback`."""
        return (
            *(len(b) for b in self.bodies),
            *self.counts,
            len(self.spans),
            len(self.events),
            len(self.dead_letters),
        )

    def rollback(self, mark: tuple[int, ...]) -> None:
        """Drop the rows added since ``mark`` (state marks stay: recomputing is harmless)."""
        for body, size in zip(self.bodies, mark[:3], strict=True):
            del body[size:]
        self.counts[:] = mark[3:6]
        del self.spans[mark[6] :]
        del self.events[mark[7] :]
        del self.dead_letters[mark[8] :]

    @property
    def samples(self) -> int:
        return self.counts[0] + self.counts[1] + self.counts[2]

    @property
    def has_rows(self) -> bool:
        """Whether there is anything to write (refused and STATE messages alone have none)."""
        return bool(self.samples or self.spans or self.states or self.events or self.dead_letters)

    def add_num(self, prefix: bytes, ts: int, value: float | None, ordinal: int = 0) -> None:
        """A numeric sample (the hot path); ``ordinal`` microseconds after ``ts`` (the n-th
        value of the metric within that millisecond, see :mod:`plantwire_bus.extension`)."""
        body = self.bodies[0]
        body += prefix
        if value is None:
            body += _TS_NULL.pack((ts - PG_EPOCH_MS) * 1000 + ordinal, -1)
        else:
            body += _TS_DOUBLE.pack((ts - PG_EPOCH_MS) * 1000 + ordinal, 8, value)
        self.counts[0] += 1

    def add_other(
        self, target: Target, ts: int, value: float | bool | str | None, ordinal: int = 0
    ) -> None:
        """A boolean or text sample, or one of a state or event series."""
        sid, _, kind, flags, prefix = target
        if kind == NUM:
            self.add_num(prefix, ts, value, ordinal)  # type: ignore[arg-type]
        else:
            body = self.bodies[kind]
            body += prefix
            micros = (ts - PG_EPOCH_MS) * 1000 + ordinal
            if value is None:
                body += _TS_NULL.pack(micros, -1)
            elif kind == BOOL:
                body += _TS.pack(micros)
                body += _BOOL[bool(value)]
            else:
                raw = str(value).encode()
                body += _TS_LEN.pack(micros, len(raw))
                body += raw
            self.counts[kind] += 1
        if flags & 1:  # STATE
            known = self.states.get(sid)
            if known is None or ts < known:
                self.states[sid] = ts
        if flags & 2:  # EVENT
            self.events.append((sid, ts * 1000 + ordinal, None if value is None else str(value)))

    def copy_data(self, kind: int) -> bytes:
        """A complete binary COPY stream of one sample table's rows."""
        return COPY_HEADER + self.bodies[kind] + COPY_TRAILER

    def late_marks(self, now_ms: int) -> tuple[list[int], list[int]]:
        """(birth ids, minute starts in ms) of samples older than LATE_MS: roll-ups of those
        minutes may have been computed already and must be recomputed."""
        limit = now_ms - LATE_MS
        marks: set[tuple[int, int]] = set()
        for birth_id, lo, hi in self.spans:
            if lo < limit:
                for minute in range(lo // MINUTE_MS, min(hi, limit) // MINUTE_MS + 1):
                    marks.add((birth_id, minute * MINUTE_MS))
        ordered = sorted(marks)
        return [m[0] for m in ordered], [m[1] for m in ordered]
