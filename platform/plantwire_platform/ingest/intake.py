"""Turns received Sparkplug messages into batches.

Births and deaths go to the :class:`~plantwire_platform.ingest.shared_state.SharedState` at
once (other workers may be waiting for them); data is resolved against the alias book, which is
refreshed from the shared state when a message cannot be resolved and at every batch. Under a
shared subscription a data message whose birth was taken by another worker that has not stored
it yet is parked (not acknowledged) for up to ``reorder_wait_ms`` and retried; after that, or
at once with a subscription of its own, it becomes a dead letter and the node is asked for a
rebirth.
Before anything else, the sender's identity is checked (:mod:`.admission`): a message from an
edge node the registry does not know, or about a device its node does not own, is refused.
Nothing a message contains can make this raise: every failure is a dead letter (an
unexpected error too, as ``internal_error``, with none of the message's rows kept).
"""

from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass, field

import psycopg

from plantwire_bus.mqtt import Message
from plantwire_bus.payload import PayloadError, decode_payload
from plantwire_bus.topics import MessageType
from plantwire_platform.ingest.admission import Admission, Quota
from plantwire_platform.ingest.batch import Batch, DeadLetter, Problems
from plantwire_platform.ingest.host import (
    AliasBook,
    Generation,
    Route,
    TimeWindow,
    ValueProblem,
    classify,
    decode_data,
    now_ms,
    parse_data,
    read_birth,
    read_death,
)
from plantwire_platform.ingest.metrics import IngestMetrics
from plantwire_platform.ingest.node_clock import NodeTrack
from plantwire_platform.ingest.shared_state import Key, SharedState, birth_samples
from plantwire_platform.settings import PlatformSettings

log = logging.getLogger(__name__)

DEFAULT_REORDER_WAIT_MS = 2_000  # workers of a shared subscription
MISS_TTL_S = 0.2  # do not ask the database again about an unknown node/device this soon
MAX_BIRTH_METRICS = 50_000
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
"""Errors of the database connection, not of a message: the worker reconnects and retries."""


@dataclass
class IngestStats:
    messages: int = 0
    sparkplug_messages: int = 0  # edge node and device messages taken (not STATE)
    resolved_elsewhere: int = 0  # data resolved with a birth another worker stored
    samples_written: int = 0
    dead_letters: int = 0
    rebirths_requested: int = 0
    batches: int = 0
    outages: int = 0  # times the database or the broker was away (retried)
    last_batch_ms: float = 0.0
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Parked:
    since: float  # monotonic time of arrival
    message: Message


class Intake:
    """Message -> batch rows, with the alias book and the parked messages of one worker."""

    def __init__(
        self,
        state: SharedState,
        settings: PlatformSettings,
        metrics: IngestMetrics,
        stats: IngestStats,
    ) -> None:
        self.state = state
        self.book = AliasBook()
        self.metrics = metrics
        self.stats = stats
        self.shared = settings.shared_group is not None
        # how long data waits for a birth another worker took, and a seq hole for a message
        # late on the way (the reorder timeout): by default 0 for a worker alone, which reads
        # each node's messages in the order the broker passes them on
        reorder_ms = settings.reorder_wait_ms
        if reorder_ms is None:
            reorder_ms = DEFAULT_REORDER_WAIT_MS if self.shared else 0
        self.wait_s = reorder_ms / 1000 if self.shared else 0.0
        self.seq_wait_s = reorder_ms / 1000
        self.retention_days = settings.retention_days
        self.parked: collections.deque[Parked] = collections.deque()
        self.tracks: dict[tuple[str, str], NodeTrack] = {}  # the node sessions seen last
        self._misses: dict[Key, float] = {}
        self.payload_bytes = settings.dead_letter_payload_bytes
        self.admission = Admission(
            state.roster,
            admit_unregistered=settings.unregistered_nodes == "admit",
            refresh_s=settings.registry_refresh_s,
            quota=Quota(
                settings.refused_dead_letters_per_s,
                settings.refused_dead_letters_burst,
                time.monotonic,
            ),
        )

    # -- the shared state ------------------------------------------------------------------
    async def refresh(self) -> int:
        """Apply births stored or ended by any worker since the last call."""
        changes = await self.state.changes()
        for key, gen in changes:
            self.book.add(key, gen)
            self._misses.pop(key, None)
        return len(changes)

    async def _load(self, key: Key) -> None:
        now = time.monotonic()
        if now - self._misses.get(key, -1e9) < MISS_TTL_S:
            return
        gens = await self.state.load(key)
        for gen in gens:
            self.book.add(key, gen)
        if gens:
            self._misses.pop(key, None)
        else:
            self._misses[key] = now
            if len(self._misses) > 10_000:
                self._misses.clear()

    # -- messages --------------------------------------------------------------------------
    async def take(self, message: Message, batch: Batch, since: float) -> bool:
        """Add what ``message`` carries to ``batch``; False if it was parked instead."""
        route = classify(message.topic)
        if route is None:  # STATE, commands: nothing to store
            batch.messages.append(message)
            return True
        if isinstance(route, str):
            self.dead(batch, message, "bad_topic", route)
            batch.messages.append(message)
            return True
        refusal = await self.admission.refusal(route)
        if refusal is not None:
            self.refuse(batch, message, route, refusal)
            batch.messages.append(message)
            return True
        mark = batch.mark()
        try:
            if route.kind in (MessageType.NDATA, MessageType.DDATA):
                taken = await self._data(message, route, batch, since)
            elif route.kind in (MessageType.NBIRTH, MessageType.DBIRTH):
                await self._birth(message, route, batch)
                taken = True
            else:
                await self._death(message, route, batch)
                taken = True
        except PayloadError as exc:
            batch.rollback(mark)
            self.dead(batch, message, "undecodable", str(exc))
            taken = True
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
            log.warning("could not store %s: %s", message.topic, exc)
            batch.rollback(mark)
            self.dead(batch, message, "storage_error", str(exc))
            taken = True
        except CONNECTION_ERRORS:
            raise  # the database, not the message: the worker reconnects and takes it again
        except Exception as exc:  # a bug met by this input: keep the message, keep running
            log.exception("could not take %s", message.topic[:200])
            batch.rollback(mark)
            self.dead(batch, message, "internal_error", f"{type(exc).__name__}: {exc}"[:2000])
            taken = True
        if taken:
            batch.messages.append(message)
            if since > -math.inf:  # not a retake of a failed batch
                self.stats.sparkplug_messages += 1
                self.metrics.message(route.kind.value)
        return taken

    async def _birth(self, message: Message, route: Route, batch: Batch) -> None:
        arrival = now_ms()
        payload = decode_payload(message.payload)
        if len(payload.metrics) > MAX_BIRTH_METRICS:
            self.dead(batch, message, "bad_birth", f"{len(payload.metrics)} metrics")
            return
        birth = read_birth(route, payload, arrival)
        window = TimeWindow.around(arrival, self.retention_days)
        if birth.ts > window.hi:  # its data would all come "before" it: the birth is refused
            self.dead(batch, message, "absurd_timestamp", f"birth stamped {birth.ts} ms")
            return
        node = (route.group_id, route.edge_node_id)
        if route.kind is MessageType.DBIRTH and not self.book.generations((*node, "")):
            await self._load((*node, ""))
            if not self.book.generations((*node, "")) and not self.shared:
                batch.rebirths[node] = "no_node_birth"  # a DBIRTH must follow an NBIRTH
        gen = await self.state.store_birth(birth)
        key = (route.group_id, route.edge_node_id, route.device_id)
        self.book.add(key, gen)
        self._misses.pop(key, None)
        problems = Problems()
        for reason in birth.problems:
            problems.add("bad_birth", reason)
        first, last = window.hi, window.lo  # the span of accepted timestamps
        refused: list[ValueProblem] = []
        for target, ts, value, ordinal in birth_samples(birth, gen, refused):
            if window.lo <= ts <= window.hi:
                batch.add_other(target, ts, value, ordinal)
                first, last = min(first, ts), max(last, ts)
            else:
                problems.add("absurd_timestamp", f"timestamp {ts} ms")
        for exc in refused:
            problems.add(exc.reason, str(exc))
        if first <= last:
            batch.spans.append((gen.birth_id, first, last))
        if route.kind is MessageType.NBIRTH:
            self._track(route, birth.ts, arrival, max(last, birth.ts), None)
            batch.add_seq(node, birth.ts, birth.seq, is_birth=True)
        else:
            session = self._node_session(route, birth.ts)
            self._track(route, birth.ts, arrival, max(last, birth.ts), session)
            if birth.seq is not None:
                self._seq(batch, route, birth.seq, session)
        if problems:
            self.dead(batch, message, problems.reason, problems.detail())

    async def _death(self, message: Message, route: Route, batch: Batch) -> None:
        payload = decode_payload(message.payload)
        death = read_death(route, payload, now_ms())
        track = self.tracks.get((route.group_id, route.edge_node_id))
        ts = await self.state.record_death(death, track if not route.device_id else None)
        if ts is not None:
            self.book.mark_dead((route.group_id, route.edge_node_id, route.device_id), ts)
        if route.kind is MessageType.DDEATH and death.seq is not None:
            self._seq(batch, route, death.seq, self._node_session(route, payload.timestamp or 0))

    async def _data(self, message: Message, route: Route, batch: Batch, since: float) -> bool:
        arrival = now_ms()
        key = (route.group_id, route.edge_node_id, route.device_id)
        window = TimeWindow.around(arrival, self.retention_days)
        pb, seq, pts = parse_data(message.payload)
        spans = len(batch.spans)
        problems = Problems()
        gen = self.book.find(key, pts)
        if gen is None or not decode_data(
            pb, gen, window, pts or arrival, batch, problems, allow_unknown=False
        ):
            await self._load(key)
            if route.device_id:
                await self._load((route.group_id, route.edge_node_id, ""))
            final = time.monotonic() - since >= self.wait_s
            gen = self.book.find(key, pts)
            if gen is None:
                if not final:
                    return False
                node_known = bool(self.book.generations((route.group_id, route.edge_node_id, "")))
                reason = "no_device_birth" if route.device_id and node_known else "no_node_birth"
                self.dead(batch, message, reason, f"no birth known for {message.topic[:200]}")
                batch.rebirths[(route.group_id, route.edge_node_id)] = reason
                return True
            if not decode_data(pb, gen, window, pts or arrival, batch, problems, final):
                return False
        if problems.unknown_names:
            batch.rebirths[(route.group_id, route.edge_node_id)] = "unknown_metric"
        if gen.worker != self.state.worker:
            self.stats.resolved_elsewhere += 1
        # the node's birth in force: an NDATA's own, looked up once for the track and sequence
        session = self._node_session(route, pts) if route.device_id else gen
        if pts:
            last_value = batch.spans[-1][2] if len(batch.spans) > spans else 0
            self._track(route, pts, arrival, last_value, session)
        self._after_data(batch, route, gen, seq, pts, session)
        if problems:
            self.dead(batch, message, problems.reason, problems.detail())
        return True

    def _after_data(
        self,
        batch: Batch,
        route: Route,
        gen: Generation | None,
        seq: int | None,
        pts: int,
        session: Generation | None,
    ) -> None:
        if pts and (not batch.oldest_source_ms or pts < batch.oldest_source_ms):
            batch.oldest_source_ms = pts
        if gen is not None and gen.death_ts is not None and route.device_id and pts > gen.death_ts:
            batch.rebirths[(route.group_id, route.edge_node_id)] = "data_after_death"
        if seq is not None:
            self._seq(batch, route, seq, session)

    def _node_session(self, route: Route, pts: int) -> Generation | None:
        """The birth of the message's edge node in force at ``pts``."""
        return self.book.find((route.group_id, route.edge_node_id, ""), pts)

    def _track(
        self, route: Route, pts: int, arrival: int, last_value: int, session: Generation | None
    ) -> None:
        """Follow the node's session: its latest message (payload timestamp, arrival) and
        value, which its NDEATH is placed by (:mod:`.node_clock`); ``session`` is the node's
        birth in force at ``pts`` (not read for an NBIRTH)."""
        node = (route.group_id, route.edge_node_id)
        track = self.tracks.get(node)
        if route.kind is MessageType.NBIRTH:
            if track is None or pts >= track.birth_ts:
                self.tracks[node] = NodeTrack(pts, pts, arrival, last_value)
            return
        if track is not None and session is not None and session.birth_ts == track.birth_ts:
            track.saw(pts, arrival, last_value)

    def _seq(self, batch: Batch, route: Route, seq: int, session: Generation | None) -> None:
        birth_ts = session.birth_ts if session else None
        batch.add_seq((route.group_id, route.edge_node_id), birth_ts, seq)

    def dead(self, batch: Batch, message: Message, reason: str, detail: str) -> None:
        payload = message.payload
        if len(payload) > self.payload_bytes:
            detail = f"{detail} [payload {len(payload)} bytes, first {self.payload_bytes} kept]"
            payload = payload[: self.payload_bytes]
        batch.dead_letters.append(DeadLetter(message.topic[:500], reason, detail[:2000], payload))
        self.counted_dead(reason)

    def refuse(self, batch: Batch, message: Message, route: Route, reason: str) -> None:
        """A message whose sender is not registered: a dead letter within the quota."""
        self.metrics.refused(reason)
        if self.admission.refused_one(route):
            what = "edge node" if reason == "unregistered_node" else "device of its node"
            self.dead(batch, message, reason, f"not a registered {what}")

    def counted_dead(self, reason: str) -> None:
        """Count one refused message (or, for conflicting_value, one refused value)."""
        self.stats.dead_letters += 1
        self.metrics.dead_letter(reason)

    # -- parked messages -------------------------------------------------------------------
    def park(self, message: Message, since: float) -> None:
        self.parked.append(Parked(since, message))
        self.metrics.parked.set(len(self.parked))

    async def retry_parked(self, batch: Batch) -> None:
        """Take parked messages again, in arrival order; those still unresolved stay."""
        waiting, self.parked = self.parked, collections.deque()
        for item in waiting:
            if not await self.take(item.message, batch, item.since):
                self.parked.append(item)
        self.metrics.parked.set(len(self.parked))
