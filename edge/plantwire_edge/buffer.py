"""The store-and-forward buffer: every value an adapter reports is kept here until the primary
host confirmed that it committed the message that carried it (or, with a host that does not
confirm commits, until the broker's PUBACK; see docs/reliability.md).

Values are written in batches (one per device per flush) to SQLite in WAL mode; with
``sync = "full"`` each flush is fsynced, so a batch survives ``kill -9`` and power loss. A
batch is deleted only after :meth:`Buffer.write` is handed it as acknowledged. The buffer is
bounded by a number of values; beyond it the overflow policy drops the oldest batches or
refuses new ones, and counts every value dropped. Without a path the buffer lives in memory
(same behaviour, lost when the process ends).

A sample is ``(key, value, ts_ms)`` (``(key, value, ts_ms, n)`` for the n-th value of a key
within one millisecond); ``key`` identifies (device, metric, datatype) in the
buffer's metric table and doubles as the metric's Sparkplug alias, so aliases are stable
across restarts.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import marshal
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from plantwire_bus.payload import DataType

log = logging.getLogger(__name__)

Sample = tuple[int, Any, int] | tuple[int, Any, int, int]
"""(key, value, ts_ms) or, for the n-th value of a key within one millisecond, (key, value,
ts_ms, n) (see :data:`plantwire_bus.extension.ORDINAL`)."""
QUEUED, DONE, DROPPED = 0, 1, 2
FORMAT = "1"
CACHE_VALUES = 200_000  # values kept in memory beside the disk copy, for sending without a read

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, count INTEGER NOT NULL,
    first_ts INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS metric (
    key INTEGER PRIMARY KEY, device TEXT NOT NULL, name TEXT NOT NULL,
    datatype INTEGER NOT NULL, UNIQUE (device, name));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class MetricKey:
    key: int
    device: str
    name: str
    datatype: DataType


@dataclass(eq=False, slots=True)
class Batch:
    """Samples of one device stored together; sent as one DDATA message (or part of one)."""

    id: int
    device: str
    count: int
    first_ts: int
    values: list[Sample] | None  # None: only on disk
    live: bool = False  # stored while the node was publishing in real time
    state: int = QUEUED


@dataclass
class BufferStats:
    stored_values: int = 0
    acked_values: int = 0
    dropped_values: int = 0  # by the overflow policy
    depth_values: int = 0
    depth_batches: int = 0
    writes: int = 0


class BufferInUse(RuntimeError):
    """Another gateway process holds this buffer file."""


class Buffer:
    def __init__(
        self,
        path: str | None = None,
        max_values: int = 10_000_000,
        overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest",
        sync: Literal["full", "normal"] = "full",
    ) -> None:
        self.path = path
        self.max_values = max_values
        self.overflow = overflow
        self.sync = sync
        self.stats = BufferStats()
        self.metrics: dict[int, MetricKey] = {}
        self._by_name: dict[tuple[str, str], MetricKey] = {}
        self._order: collections.deque[Batch] = collections.deque()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._next_id = 1
        self._cached = 0
        self._meta: dict[str, str] = {}
        self._lock_file: IO[str] | None = None

    @property
    def durable(self) -> bool:
        return self.path is not None

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> list[Batch]:
        """Open (creating if needed); returns the batches still queued, oldest first."""
        if self.path is None:
            return []
        self._lock_file = Path(self.path + ".lock").open("a")  # noqa: SIM115 - until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise BufferInUse(f"{self.path} is used by another running gateway") from None
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.sync.upper()}")
        db.executescript(_SCHEMA)
        self._db = db
        self._meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        fmt = self._meta.get("format")
        if fmt is not None and fmt != FORMAT:
            raise RuntimeError(f"{self.path}: buffer format {fmt} is not supported ({FORMAT})")
        self.set_meta("format", FORMAT)
        for key, device, name, datatype in db.execute("SELECT * FROM metric"):
            self._remember(MetricKey(key, device, name, DataType(datatype)))
        queued = [
            Batch(i, device, count, first_ts, None)
            for i, device, count, first_ts in db.execute(
                "SELECT id, device, count, first_ts FROM batch ORDER BY id"
            )
        ]
        self._order.extend(queued)
        self.stats.depth_values = sum(b.count for b in queued)
        self.stats.depth_batches = len(queued)
        self._next_id = (queued[-1].id + 1) if queued else self._max_id() + 1
        self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if queued:
            log.info(
                "buffer %s: %d values in %d batches to replay",
                self.path,
                self.stats.depth_values,
                len(queued),
            )
        return queued

    def _max_id(self) -> int:
        assert self._db is not None
        row = self._db.execute("SELECT coalesce(max(id), 0) FROM batch").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            for conn in (self._reader, self._db):
                if conn is not None:
                    conn.close()
            self._db = self._reader = None
            if self._lock_file is not None:
                self._lock_file.close()  # releases the lock
                self._lock_file = None

    # -- metric keys and metadata ----------------------------------------------------------
    def _remember(self, mk: MetricKey) -> None:
        self.metrics[mk.key] = mk
        self._by_name[(mk.device, mk.name)] = mk

    def metric_key(self, device: str, name: str, datatype: DataType) -> int:
        """The stable key (and Sparkplug alias) of a device's metric, created if new."""
        known = self._by_name.get((device, name))
        if known is not None and known.datatype == datatype:
            return known.key
        key = known.key if known is not None else max(self.metrics, default=0) + 1
        mk = MetricKey(key, device, name, datatype)
        if self._db is not None:
            with self._lock:
                self._db.execute(
                    "INSERT INTO metric VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET datatype = excluded.datatype",
                    (key, device, name, int(datatype)),
                )
        self._remember(mk)
        return key

    def meta(self, name: str, default: str | None = None) -> str | None:
        return self._meta.get(name, default)

    def set_meta(self, name: str, value: str) -> None:
        self._meta[name] = value
        if self._db is not None:
            with self._lock:
                self._db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                    "SET value = excluded.value",
                    (name, value),
                )

    # -- the write path --------------------------------------------------------------------
    def write(
        self,
        groups: Iterable[tuple[str, list[Sample], bool]],
        acked: Iterable[Batch],
        meta: dict[str, str] | None = None,
    ) -> tuple[list[Batch], list[Batch]]:
        """Store new samples ``(device, samples, live)``, forget acknowledged batches and set
        metadata (e.g. how far a subscription is stored), in one transaction.

        Thread-safe (the node runs it on its event loop, or in a writer thread while the disk
        stalls). Returns the batches stored and the batches dropped by the overflow policy.
        """
        stats = self.stats
        with self._lock:
            stored: list[Batch] = []
            dropped: list[Batch] = []
            rows: list[tuple[int, str, int, int, bytes]] = []
            done: list[Batch] = []
            for batch in acked:
                if batch.state != QUEUED:
                    continue  # dropped by the overflow policy while in flight
                batch.state = DONE
                done.append(batch)
                if batch.values is not None:
                    self._cached -= batch.count
                    batch.values = None
                stats.acked_values += batch.count
                stats.depth_values -= batch.count
                stats.depth_batches -= 1
            for device, samples, live in groups:
                count = len(samples)
                if not count:
                    continue
                if stats.depth_values + count > self.max_values:
                    if self.overflow == "drop_newest":
                        stats.dropped_values += count
                        continue
                    self._drop_oldest(stats.depth_values + count - self.max_values, dropped)
                cached = self._db is None or self._cached + count <= CACHE_VALUES
                batch = Batch(
                    self._next_id, device, count, samples[0][2], samples if cached else None, live
                )
                self._next_id += 1
                if cached:
                    self._cached += count
                if self._db is not None:
                    rows.append((batch.id, device, count, batch.first_ts, marshal.dumps(samples)))
                stored.append(batch)
                self._order.append(batch)
                stats.stored_values += count
                stats.depth_values += count
                stats.depth_batches += 1
            if meta:
                self._meta.update(meta)
            if self._db is not None and (rows or done or dropped or meta):
                db = self._db
                db.execute("BEGIN")
                if meta:
                    db.executemany(
                        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                        "SET value = excluded.value",
                        list(meta.items()),
                    )
                gone = [(b.id,) for b in done] + [(b.id,) for b in dropped]
                if gone:
                    db.executemany("DELETE FROM batch WHERE id = ?", gone)
                if rows:
                    db.executemany("INSERT INTO batch VALUES (?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
                stats.writes += 1
            self._trim()
        return stored, dropped

    def _drop_oldest(self, excess: int, dropped: list[Batch]) -> None:
        stats = self.stats
        while excess > 0 and self._order:
            batch = self._order.popleft()
            if batch.state != QUEUED:
                continue
            batch.state = DROPPED
            if batch.values is not None:
                self._cached -= batch.count
                batch.values = None
            excess -= batch.count
            stats.dropped_values += batch.count
            stats.depth_values -= batch.count
            stats.depth_batches -= 1
            dropped.append(batch)

    def _trim(self) -> None:
        while self._order and self._order[0].state != QUEUED:
            self._order.popleft()

    def load(self, batch: Batch) -> list[Sample]:
        """The samples of ``batch`` (from memory, or read back from disk)."""
        values = batch.values
        if values is not None:
            return values
        if self._reader is None:
            raise RuntimeError("buffer is closed")
        row = self._reader.execute("SELECT data FROM batch WHERE id = ?", (batch.id,)).fetchone()
        if row is None:
            return []
        loaded: list[Sample] = marshal.loads(row[0])
        return loaded

    def oldest_ts(self) -> int | None:
        """Timestamp of the oldest value still waiting, if any."""
        with self._lock:
            self._trim()
            return self._order[0].first_ts if self._order else None
