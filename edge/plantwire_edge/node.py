"""The Sparkplug B edge node: births with aliases, batched DDATA, seq/bdSeq, deaths, rebirths,
all fed from the durable buffer.

Adapters get a :class:`DeviceChannel` per device and report values into it. Every ``batch_ms``
(or at once, for values an adapter awaits with ``stored(at_once=True)``: the OPC UA adapter's
publish responses, which then put the tick off) the node writes what arrived to the
:class:`~plantwire_edge.buffer.Buffer` (one batch per device, committed before anything is
sent; on the event loop's own thread, which spares each commit a hand-over to a thread and
back, unless a commit took longer than ``SLOW_WRITE_S``: then the writer thread takes them for
``WRITER_S`` so that a stalling disk does not hold up the loop), then publishes queued batches
as DDATA at QoS 1 (QoS 0 with ``spec_strict``); a batch leaves the buffer only once the primary
host confirmed it committed the message (plantwire's commit confirmations; with a host that
does not confirm, after the broker's PUBACK, or once sent at QoS 0). What stays unconfirmed
past ``commit_timeout_s`` is sent again. While the broker is unreachable or the primary host's
STATE is offline, batches stay queued; afterwards the node births again (NBIRTH, then a DBIRTH
per online device) and sends the backlog in order, flagged ``is_historical``. The broker
connection itself is the :class:`Uplink`'s business.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from plantwire_bus.extension import (
    CLOCK_RATE,
    Committed,
    confirms_commits,
    parse_committed_topic,
)
from plantwire_bus.mqtt import Message, MqttClient
from plantwire_bus.payload import DataType, Metric, Payload, PayloadError, decode_payload
from plantwire_bus.payload import encode_payload as encode_birth
from plantwire_bus.topics import MessageType, Topic, decode_state
from plantwire_edge.buffer import QUEUED, Batch, Buffer, Sample
from plantwire_edge.channel import DeviceChannel
from plantwire_edge.clock import WALL_CLOCK, Clock, clock_rate
from plantwire_edge.config import EdgeConfig
from plantwire_edge.ddata import Field, encode_ddata, encode_valid, field_for
from plantwire_edge.uplink import Uplink

log = logging.getLogger(__name__)

REBIRTH_METRIC = "Node Control/Rebirth"
WINDOW = 64  # DDATA messages awaiting PUBACK at once
AWAITING = 128  # DDATA messages awaiting the host's commit at once (seq has 256 values)
MAX_BATCH = 5_000  # samples per stored batch
MAX_MESSAGE = 10_000  # samples per replayed DDATA (consecutive historical batches merged)
DRAIN_S = 5.0  # on shutdown: how long to wait for the backlog to be acknowledged
SLOW_WRITE_S = 0.5  # a buffer commit slower than this on the event loop (a disk stall) ...
WRITER_S = 30.0  # ... sends the following ones to the writer thread for this long
TICK_AFTER_ARRIVAL = 1.5  # the tick after a flush on arrival: this many batch_ms later


@dataclass
class NodeStats:
    published: int = 0  # messages of every kind
    acknowledged: int = 0  # messages of every kind the broker took (PUBACK; QoS 0: sent)
    values_sent: int = 0  # DDATA metrics published
    values_acked: int = 0  # DDATA metrics acknowledged by the broker
    values_committed: int = 0  # DDATA metrics the primary host confirmed as committed
    commit_timeouts: int = 0  # DDATA messages sent again: no commit confirmation in time
    historical_sent: int = 0
    values_dropped: int = 0  # by the buffer's overflow policy
    encode_rejected: int = 0
    births: int = 0
    device_deaths: int = 0
    connects: int = 0
    connect_failures: int = 0


class EdgeNode:
    def __init__(
        self, config: EdgeConfig, buffer: Buffer | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or WALL_CLOCK
        """Stamps births, deaths and payloads (see :mod:`plantwire_edge.clock`)."""
        bc = config.buffer
        self.buffer = buffer or Buffer(bc.path, bc.max_values, bc.overflow, bc.sync)
        self.stats = NodeStats()
        self.channels: dict[str, DeviceChannel] = {}
        self.fields: dict[int, Field] = {}
        self.connected = asyncio.Event()
        self.host_online = config.primary_host_id is None
        self._state_ts: int | None = None  # of the last STATE taken from the primary host
        self.uplink = Uplink(config, self.buffer, self.stats, self, self.clock)
        self._seq = 0
        self._qos = 0 if config.spec_strict else 1  # Sparkplug's QoS 0, or wait for PUBACK
        self.birth_ts = 0  # timestamp of this connection's NBIRTH (names its seq stream)
        self.host_commits = False  # the primary host confirms commits: delete only then
        self._said_commits: bool | None = None  # what the log last said about it
        self._awaiting: dict[tuple[int, int], tuple[DeviceChannel, list[Batch], int, float]] = {}
        self._need_birth = True
        self._declared_rate: float | None = None  # the clock rate of the last NBIRTH
        self._client: MqttClient | None = None
        self._generation = 0
        self._inflight_messages = 0
        self._sent_ms = 0  # gateway time of the last publish on the current connection
        self._acked: list[Batch] = []
        self._pump_due = False
        self._opened = False
        self._running = False
        self._store_waiters: list[asyncio.Future[None]] = []
        self._interval = max(config.batch_ms, 10) / 1000
        self._cycling = asyncio.Lock()  # one flush-and-pump cycle at a time
        self._tick: asyncio.Future[None] | None = None  # the node loop waits on it
        self._tick_timer: asyncio.TimerHandle | None = None
        self._meta: dict[str, str] = {}  # buffer metadata stored with the next flush
        self._committing: dict[str, str] = {}  # ... and with the one the writer thread commits
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._threaded_until = 0.0  # loop time until which commits go to the writer thread

    # -- adapters' side --------------------------------------------------------------------
    def open(self) -> None:
        """Open the buffer and queue what an earlier run left in it (idempotent)."""
        if self._opened:
            return
        self._opened = True
        for batch in self.buffer.open():
            self.channel(batch.device).unsent.append(batch)
        for key, mk in self.buffer.metrics.items():
            self.fields[key] = field_for(mk.datatype)

    def channel(self, device_id: str) -> DeviceChannel:
        dev = self.channels.get(device_id)
        if dev is None:
            dev = self.channels[device_id] = DeviceChannel(self, device_id)
        return dev

    def register(self, device_id: str, name: str, datatype: DataType) -> int:
        self.open()
        key = self.buffer.metric_key(device_id, name, datatype)
        self.fields[key] = field_for(datatype)
        return key

    def meta(self, name: str) -> str | None:
        """Buffer metadata ``name`` as the next flush leaves it: a value given to
        :meth:`stored` with values still staged counts (they are stored with it, or the
        process is gone and neither is), and so does one in the writer thread's commit."""
        for pending in (self._meta, self._committing):
            if name in pending:
                return pending[name]
        return self.buffer.meta(name)

    async def stored(self, meta: tuple[str, str] | None = None, *, at_once: bool = False) -> None:
        """Return once every value reported so far is durably in the buffer (at once with a
        buffer in memory), together with the buffer metadata ``meta`` (name, value): the
        OPC UA adapter acknowledges notifications only then. ``at_once``: store them now
        instead of at the next tick (values that arrive every ``batch_ms`` or less often, a
        batch each: the OPC UA adapter's publish responses)."""
        if meta is not None:
            self._meta[meta[0]] = meta[1]
        if not self.buffer.durable or not self._running:
            return
        loop = asyncio.get_running_loop()
        if at_once and not self._cycling.locked():
            # stored in this very wake-up, not the next tick's: a wake-up of the loop costs
            # about as much CPU as a cycle's work (docs/benchmarks.md); a publish response
            # each batch_ms then wakes the loop once, and the tick, put off, not at all
            async with self._cycling:
                await self._cycle()
            self._arm(loop.time() + self._interval * TICK_AFTER_ARRIVAL)
            return
        waiter = loop.create_future()
        self._store_waiters.append(waiter)  # resolved by the next flush (every batch_ms)
        await waiter

    # -- the node's loop -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then store what is staged, send what can be sent, and die."""
        self.open()
        if self.buffer.durable:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, "plantwire-buffer")
        halt = asyncio.Event()
        stopping: asyncio.Task[Literal[True]] | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.uplink.run(halt))
                self._running = True
                loop = asyncio.get_running_loop()
                stopping = asyncio.create_task(stop.wait())
                stopping.add_done_callback(self._stopping)
                self._arm(loop.time() + self._interval)
                while not stop.is_set():
                    assert self._tick is not None
                    await self._tick  # every batch_ms, or put off by flushes on arrival
                    async with self._cycling:
                        await self._cycle()
                    self._arm(loop.time() + self._interval)
                async with self._cycling:
                    await self._flush()
                await self._drain()
                halt.set()
        finally:
            self._running = False
            if stopping is not None:
                stopping.cancel()
            async with self._cycling:  # a flush on arrival may still be at its commit
                await self._flush(final=True)
            if self._executor is not None:
                self._executor.shutdown()
            left = self.buffer.stats.depth_values
            if left:
                where = self.buffer.path or "memory (lost now)"
                log.warning("%d values not yet acknowledged remain in the buffer: %s", left, where)
            self.buffer.close()

    def _stopping(self, task: asyncio.Task[Literal[True]]) -> None:
        if not task.cancelled():
            self._arm(asyncio.get_running_loop().time())  # the node loop's last tick: now

    def _arm(self, due: float) -> None:
        """(Re)schedule the node loop's next tick at loop time ``due``."""
        if self._tick is None or self._tick.done():
            self._tick = asyncio.get_running_loop().create_future()
        if self._tick_timer is not None:
            self._tick_timer.cancel()  # a cancelled timer wakes nobody
        self._tick_timer = asyncio.get_running_loop().call_at(due, _wake, self._tick)

    async def _cycle(self) -> None:
        """Store what is staged, expire, publish (under ``_cycling``)."""
        await self._flush()
        self._expire_awaiting(self.config.commit_timeout_s)
        self._check_rate()
        self._pump()

    async def _flush(self, final: bool = False) -> None:
        waiters, self._store_waiters = self._store_waiters, []
        try:
            await self._write(final)
        finally:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _write(self, final: bool) -> None:
        groups: list[tuple[str, list[Sample], bool]] = []
        ready = self._ready()
        for dev in self.channels.values():
            if dev.merges:
                dev.merge_staged()
            if not dev.staged:
                continue
            samples = dev.take()
            current = dev.ordinals.current_keys()
            if dev.born and len(current) != dev.checked:
                dev.checked = len(current)
                if not current <= dev.birth_keys:
                    dev.rebirth = True  # a metric got its first value after the birth
            live = ready and not dev.unsent  # sent within this tick, in real time
            for start in range(0, len(samples), MAX_BATCH):
                groups.append((dev.device_id, samples[start : start + MAX_BATCH], live))
        acked, self._acked = self._acked, []
        meta, self._meta = self._meta, {}
        if not groups and not acked and not meta:
            return
        loop = asyncio.get_running_loop()
        if self._executor is not None and not final and loop.time() < self._threaded_until:
            self._committing = meta
            try:
                stored, dropped = await loop.run_in_executor(
                    self._executor, self.buffer.write, groups, acked, meta
                )
            finally:
                self._committing = {}
        else:
            # on the loop's thread: a hand-over to a thread and back (and the GIL passed
            # back and forth around each SQLite statement) cost about as much CPU as the
            # commit itself (docs/benchmarks.md)
            started = time.monotonic()
            stored, dropped = self.buffer.write(groups, acked, meta)
            took = time.monotonic() - started
            if self._executor is not None and took > SLOW_WRITE_S:
                self._threaded_until = loop.time() + WRITER_S
                log.info("a buffer commit took %.0f ms: commits go to the writer thread for "
                         "%.0f s", took * 1000, WRITER_S)  # fmt: skip
        for batch in stored:
            self.channels[batch.device].unsent.append(batch)
        if dropped:
            self.stats.values_dropped += sum(b.count for b in dropped)
            log.warning("buffer full: dropped the %d oldest values", sum(b.count for b in dropped))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_S
        while loop.time() < deadline and self._ready():
            if not any(d.inflight or (d.unsent and d.born) for d in self.channels.values()):
                return
            self._pump()
            await asyncio.sleep(0.02)

    # -- the uplink's hooks -----------------------------------------------------------------
    @property
    def birthed(self) -> bool:
        """Whether this connection has published its NBIRTH."""
        return not self._need_birth

    def attached(self, client: MqttClient) -> None:
        """A new broker session is ready (subscribed); births follow when the host is up."""
        self.host_online = self.config.primary_host_id is None
        self._need_birth = True
        self._client = client
        self.connected.set()
        self._pump()

    def detached(self) -> None:
        """The broker session is gone: unacknowledged batches go back to the front. A device
        still read is born again, on the next connection, as of the last publish of this one
        (store and forward: the gateway kept reading it, so the host's session of it goes on
        across the outage; the host places the Will it receives on this node's time line,
        from the last message it took: docs/indicators.md, edge node deaths)."""
        lost_ms = self._sent_ms or self.clock.now_ms()
        for dev in self.channels.values():
            if dev.online and dev.born and dev.kept_since is None:
                dev.kept_since = lost_ms
        self._sent_ms = 0
        self._client = None
        self.connected.clear()
        self._generation += 1
        self._inflight_messages = 0
        self._awaiting.clear()  # their batches are still in flight: sent again below
        for dev in self.channels.values():
            if dev.inflight:
                batches = sorted(dev.inflight.values(), key=lambda b: b.id)
                dev.inflight.clear()
                for batch in batches:
                    batch.live = False
                dev.unsent.extendleft(reversed(batches))
            dev.born = dev.rebirth = dev.death_due = False  # the Will ends every session

    def command(self, message: Message) -> None:
        """A message on NCMD or the primary host's STATE topic."""
        if parse_committed_topic(message.topic) is not None:
            self._committed(message)
            return
        if message.topic.startswith("spBv1.0/STATE/"):
            try:
                online, ts = decode_state(message.payload)
            except PayloadError:
                log.warning("ignoring malformed STATE message on %s", message.topic)
                return
            if self._state_ts is not None and ts < self._state_ts:
                log.info("ignoring a STATE older than the last one (%d < %d)", ts, self._state_ts)
                return
            self._state_ts = ts
            if not online and self.host_online and self._client is not None:
                # Sparkplug 3.0: a valid offline STATE ends the session (NDEATH, disconnect)
                self.uplink.host_gone.set()
            commits = confirms_commits(message.payload)
            if online and commits != self._said_commits:
                self.host_commits = self._said_commits = commits
                if commits:
                    log.info("primary host confirms commits: values leave the buffer once "
                             "the platform has stored them")  # fmt: skip
                else:
                    log.warning("primary host does not confirm commits: values leave the "
                                "buffer on the broker's PUBACK")  # fmt: skip
            if online != self.host_online:
                log.info("primary host %s", "online" if online else "offline")
            if online and not self.host_online:
                self._need_birth = True
            self.host_online = online
            self._schedule_pump()
            return
        try:
            payload = decode_payload(message.payload)
        except PayloadError:
            log.warning("ignoring malformed command on %s", message.topic)
            return
        if any(m.name == REBIRTH_METRIC and m.value is True for m in payload.metrics):
            log.info("rebirth requested")
            self._need_birth = True
            self._schedule_pump()

    def _committed(self, message: Message) -> None:
        """The host stored these data messages: their batches may leave the buffer."""
        try:
            committed = Committed.decode(message.payload)
        except PayloadError as exc:
            log.warning("ignoring malformed commit confirmation: %s", exc)
            return
        for seq in committed.seqs:
            entry = self._awaiting.pop((committed.birth_ts, seq), None)
            if entry is None:
                continue  # sent again meanwhile, or confirmed twice
            dev, group, count, _ = entry
            for batch in group:
                dev.inflight.pop(batch.id, None)
            self._acked.extend(group)
            self.stats.values_committed += count
        self._schedule_pump()

    def _expire_awaiting(self, timeout_s: float) -> None:
        """Messages the host has not confirmed within ``timeout_s`` are sent again, flagged
        historical (lost on the way, e.g. at QoS 0; the host's storage absorbs repeats)."""
        if not self._awaiting:
            return
        limit = asyncio.get_running_loop().time() - timeout_s
        late = [key for key, entry in self._awaiting.items() if entry[3] < limit]
        if not late:
            return
        for key in late:
            dev, group, _, _ = self._awaiting.pop(key)
            for batch in group:
                dev.inflight.pop(batch.id, None)
                batch.live = False
            dev.unsent.extendleft(reversed(group))
            self.stats.commit_timeouts += 1
        for dev in self.channels.values():
            if len(dev.unsent) > 1:
                dev.unsent = collections.deque(sorted(dev.unsent, key=lambda b: b.id))
        log.warning("%d data messages not confirmed by the host within %.0f s: sending again",
                    len(late), timeout_s)  # fmt: skip
        self._schedule_pump()

    # -- publishing ------------------------------------------------------------------------
    def _ready(self) -> bool:
        client = self._client
        return client is not None and client.connected.is_set() and self.host_online

    def _schedule_pump(self) -> None:
        if not self._pump_due:
            self._pump_due = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _topic(self, kind: MessageType, device_id: str | None = None) -> str:
        return str(Topic(self.config.group_id, kind, self.config.edge_node_id, device_id))

    def _publish(self, client: MqttClient, topic: str, payload: bytes) -> asyncio.Future[None]:
        self.stats.published += 1
        self._sent_ms = self.clock.now_ms()
        future = client.publish_nowait(topic, payload, qos=self._qos)
        future.add_done_callback(self._observed)  # a lost connection is handled by detached()
        return future

    def _observed(self, future: asyncio.Future[None]) -> None:
        _observed(future)
        if not future.cancelled() and future.exception() is None:
            self.stats.acknowledged += 1

    def _pump(self) -> None:
        """Publish births, deaths and queued batches, as far as the window allows."""
        self._pump_due = False
        client = self._client
        if client is None or not self._ready():
            return
        if self._need_birth:
            self._node_birth(client)
        for dev in self.channels.values():  # every DBIRTH before any data (Sparkplug 3.0)
            if dev.online and (not dev.born or dev.rebirth) and not dev.death_due:
                self._device_birth(client, dev)
        for dev in self.channels.values():
            # a device that is gone is born for its backlog alone, then dies again; one being
            # connected is born first (set_online), its first values after the birth
            while (
                (dev.born or not (dev.online or dev.connecting))
                and self._inflight_messages < WINDOW
                and len(self._awaiting) < AWAITING
            ):
                if not self._send_batches(client, dev):
                    break
            # values read before the loss but not yet stored go out before the death
            pending = dev.staged or any(m.events for m in dev.merges.values())
            if dev.death_due and not dev.unsent and not pending:
                at = dev.offline_at or dev.last_ts or self.clock.now_ms()
                self._publish(
                    client,
                    self._topic(MessageType.DDEATH, dev.device_id),
                    encode_birth(Payload(timestamp=at, seq=self._next_seq())),
                )
                dev.death_due = dev.born = False
                dev.died_at = at
                self.stats.device_deaths += 1
                if dev.online:
                    self._device_birth(client, dev)

    def _check_rate(self) -> None:
        """A clock whose rate changed (a replay that caught up with the wall clock) is
        declared again: a rebirth, so the host places this node's Will by the rate in force."""
        if self._declared_rate is not None and not self._need_birth:
            rate = clock_rate(self.clock)
            if rate != self._declared_rate:
                log.info("clock rate %g, was %g: rebirth", rate, self._declared_rate)
                self._need_birth = True

    def _node_birth(self, client: MqttClient) -> None:
        self._seq = 0
        self.birth_ts = max(self.clock.now_ms(), self.birth_ts + 1)  # names a new seq stream
        at = self.birth_ts  # every metric of a birth carries a timestamp (Sparkplug 3.0)
        rate = clock_rate(self.clock)  # the host stamps the node's Will on its time line
        metrics = (
            Metric(name="bdSeq", timestamp=at, datatype=DataType.Int64, value=self.uplink.bd_seq),
            Metric(name=REBIRTH_METRIC, timestamp=at, datatype=DataType.Boolean, value=False),
            Metric(name=CLOCK_RATE, timestamp=at, datatype=DataType.Double, value=rate),
        )
        payload = encode_birth(Payload(timestamp=self.birth_ts, seq=0, metrics=metrics))
        self._publish(client, self._topic(MessageType.NBIRTH), payload)
        self._need_birth = False
        self._declared_rate = rate
        self.stats.births += 1
        for dev in self.channels.values():
            dev.born = dev.rebirth = dev.death_due = False

    def _device_birth(
        self,
        client: MqttClient,
        dev: DeviceChannel,
        backlog: list[Sample] | None = None,
        at: int | None = None,
    ) -> None:
        """DBIRTH with every metric that has a value, and those of ``backlog`` (their
        current value if known, else their first value there)."""
        dev.number_staged()  # its current values as they will be sent
        current = dev.ordinals.current_keys()
        keys = set(current) | (dev.birth_keys if dev.born else set())
        first: dict[int, tuple[Any, int, int]] = {}  # (value, ms, ordinal) of a backlog's
        for sample in backlog or ():
            key = sample[0]
            if key not in keys and key not in first:
                first[key] = (sample[1], sample[2], sample[3] if len(sample) == 4 else 0)
                self.fields.setdefault(key, field_for(self.buffer.metrics[key].datatype))
        keys |= first.keys()
        now = self.clock.now_ms()
        # a metric of the last birth with no value known (born from a backlog) is born null
        # now: a value the platform stores, numbered like any (a value of it read in this
        # millisecond comes after it, not in its place)
        unknown: list[Sample] = [
            (k, None, now) for k in keys if k not in current and k not in first
        ]
        dev.ordinals.number(unknown)
        metrics = []
        for key in sorted(keys):
            mk = self.buffer.metrics[key]
            value, ts, ordinal = dev.ordinals.current(key) or first[key]
            metrics.append(
                Metric(
                    name=mk.name,
                    alias=key,
                    timestamp=ts,
                    datatype=mk.datatype,
                    value=value,
                    is_null=value is None,
                    # a value that was not the first of its millisecond says which it was,
                    # or the platform would take it for the first one's rival
                    ordinal=ordinal,
                )
            )
        metrics.sort(key=lambda m: m.timestamp or 0)  # values in chronological order
        # a device found again while the node was connected is born as of when it was found,
        # not when the births were next pumped (at 600x a pump's wait is a simulated minute)
        at = at or dev.kept_since or max(dev.online_at, self.birth_ts) or now
        # ...and after its last death: a birth in the death's millisecond (a clock held by a
        # simulation, a device lost and found within it) would be taken for the dead one's
        at = max(at, dev.died_at + 1) if dev.died_at else at
        # ...and, born again in this session (a metric its birth lacked), not before the
        # birth it replaces: a host resolves data against the newest birth stamped no later
        # than it, and one stamped earlier would leave the new metric unknown there
        at = max(at, dev.birth_at) if dev.born else at
        dev.kept_since = None
        payload = Payload(timestamp=at, seq=self._next_seq(), metrics=tuple(metrics))
        self._publish(client, self._topic(MessageType.DBIRTH, dev.device_id), encode_birth(payload))
        dev.born, dev.rebirth, dev.birth_keys, dev.checked = True, False, keys, len(current)
        dev.birth_at = at

    def _send_batches(self, client: MqttClient, dev: DeviceChannel) -> bool:
        """Publish the next batch of ``dev`` (merged with following historical ones)."""
        while dev.unsent and dev.unsent[0].state != QUEUED:
            dev.unsent.popleft()  # dropped by the overflow policy
        if not dev.unsent:
            return False
        group = [dev.unsent[0]]
        live = group[0].live
        samples = self.buffer.load(group[0])
        if live:  # live values in chronological order, as Sparkplug asks of a data message
            samples = sorted(samples, key=_sample_time)
        else:
            samples = list(samples)
            for batch in itertools.islice(dev.unsent, 1, None):
                if batch.live or batch.state != QUEUED or len(samples) + batch.count > MAX_MESSAGE:
                    break
                group.append(batch)
                samples.extend(self.buffer.load(batch))
            dev.last_ts = max(dev.last_ts, max(sample[2] for sample in samples))
        if not dev.born:  # the device is gone: born for its backlog, as of its first value
            self._device_birth(client, dev, samples, at=group[0].first_ts)
            dev.death_due = True
        elif not {sample[0] for sample in samples} <= dev.birth_keys:  # e.g. from an earlier run
            self._device_birth(client, dev, samples)
        for _ in group:
            dev.unsent.popleft()
        seq = self._next_seq()
        # never stamped before its device's birth (one a millisecond after a death on a held
        # clock): the host resolves it against the birth in force at this timestamp
        stamp = max(self.clock.now_ms(), dev.birth_at)
        try:
            data, count = encode_ddata(
                samples, self.fields, seq=seq, timestamp=stamp, historical=not live
            )
        except (TypeError, ValueError):  # a value no longer fits its metric's datatype
            data, count, rejected = encode_valid(
                samples, self.fields, seq=seq, timestamp=stamp, historical=not live
            )
            self.stats.encode_rejected += rejected
        future = self._publish(client, self._topic(MessageType.DDATA, dev.device_id), data)
        for batch in group:
            dev.inflight[batch.id] = batch
        self._inflight_messages += 1
        self.stats.values_sent += count
        if not live:
            self.stats.historical_sent += count
        if self.host_commits:
            now = asyncio.get_running_loop().time()
            self._awaiting[(self.birth_ts, seq)] = (dev, group, count, now)
        future.add_done_callback(
            functools.partial(self._settled, dev, group, count, self._generation)
        )
        return True

    def _settled(
        self,
        dev: DeviceChannel,
        group: list[Batch],
        count: int,
        generation: int,
        future: asyncio.Future[None],
    ) -> None:
        if generation != self._generation:
            return  # the connection was lost; detached() took these back
        self._inflight_messages -= 1
        if future.cancelled() or future.exception() is not None:
            for key, entry in list(self._awaiting.items()):
                if entry[1] is group:
                    del self._awaiting[key]
            for batch in reversed(group):
                if dev.inflight.pop(batch.id, None) is not None:
                    dev.unsent.appendleft(batch)
            log.warning("broker refused DDATA for %s; kept for retry", dev.device_id)
        else:
            self.stats.values_acked += count
            if any(entry[1] is group for entry in self._awaiting.values()):
                pass  # the host's commit confirmation releases it (see _committed)
            else:
                for batch in group:
                    dev.inflight.pop(batch.id, None)
                self._acked.extend(group)
        if any(d.unsent for d in self.channels.values()):
            self._schedule_pump()


def _wake(tick: asyncio.Future[None]) -> None:
    if not tick.done():
        tick.set_result(None)


def _sample_time(sample: Sample) -> int:
    return sample[2]


def _observed(future: asyncio.Future[None]) -> None:
    """Mark a publish's outcome as seen (no "exception was never retrieved" noise)."""
    if not future.cancelled():
        future.exception()
