"""The ingest worker: the Sparkplug host application that stores what edge nodes publish.

It announces itself on ``spBv1.0/STATE/{host_id}`` (edge nodes wait for that before sending),
receives at QoS 1 in a persistent session and acknowledges each message to the broker only
after the transaction holding its rows has committed. A crash therefore loses nothing: the
broker redelivers, and the sample tables' keys make the redelivery a no-op. With
``spec_strict`` it receives at QoS 0 in a clean session, as Sparkplug prescribes, instead.

Two tasks form a pipeline: one takes messages into a batch (births and deaths are stored at
once, see :mod:`plantwire_platform.ingest.intake`) while the other writes the previous batch,
acknowledges its messages and asks nodes for rebirths. Several workers with the same
``shared_group`` split the traffic through an MQTT v5 shared subscription; one stopped
gracefully leaves the group and ends its session (:meth:`IngestWorker._leave`), one that
crashed keeps it (its share waits for it).

Beside them, the upkeep: partitions or hypertable policies now and then, the minute roll-ups
every few seconds, and roll-ups of other rooms handed in as ``upkeep`` jobs (the composition
root passes the indicators' hourly usage roll-up) every ``usage_rollup_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import psycopg

from plantwire_bus.extension import Committed, committed_topic
from plantwire_bus.mqtt import Message, MqttClient, MqttError, Will, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, PayloadError, encode_payload
from plantwire_bus.runner import stopped_within
from plantwire_bus.topics import (
    MessageType,
    Topic,
    decode_state,
    encode_state,
    state_topic,
)
from plantwire_platform.connections import connect
from plantwire_platform.ingest.batch import Batch
from plantwire_platform.ingest.host import now_ms
from plantwire_platform.ingest.intake import CONNECTION_ERRORS, IngestStats, Intake
from plantwire_platform.ingest.metrics import IngestMetrics, MetricsServer
from plantwire_platform.ingest.sequence import SeqEntry
from plantwire_platform.ingest.shared_state import SharedState
from plantwire_platform.ingest.subscriptions import Subscriptions
from plantwire_platform.ingest.writer import BatchWriter, expire_dead_letters
from plantwire_platform.settings import PlatformSettings
from plantwire_platform.storage.partitions import maintain

log = logging.getLogger(__name__)

__all__ = ["IngestStats", "IngestWorker"]

PARKED_RETRY_S = 0.05
RETRY_MIN_S = 0.5  # first retry of an unreachable database or broker
RETRY_MAX_S = 10.0
LEAVE_QUIET_S = 0.5  # leaving a shared group: nothing held nor arriving for this long
LEAVE_MAX_S = 15.0  # ... or the worker stops keeping its session (what it holds waits there)


def dependency_of(exc: BaseException) -> str | None:
    """Which dependency an error (or any error of a group) says is away, None for others."""
    if isinstance(exc, BaseExceptionGroup):
        found = [dependency_of(e) for e in exc.exceptions]
        return "database" if "database" in found else "broker" if "broker" in found else None
    if isinstance(exc, CONNECTION_ERRORS):
        return "database"
    if isinstance(exc, MqttError | OSError | TimeoutError):
        return "broker"
    return None


def _observed(future: asyncio.Future[None]) -> None:
    """A lost confirmation costs a resend by the edge node, nothing else: no noise."""
    if not future.cancelled():
        future.exception()


def _first_error(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".strip()[:300]


Upkeep = Callable[[psycopg.AsyncConnection[Any]], Awaitable[object]]
"""A roll-up job kept current as data arrives, given an autocommit connection."""


class IngestWorker:
    """Receives Sparkplug messages and writes them in batches; run with :meth:`run`."""

    def __init__(
        self,
        settings: PlatformSettings,
        client_suffix: str | None = None,
        upkeep: Sequence[Upkeep] = (),
    ) -> None:
        self.settings = settings
        self.upkeep = tuple(upkeep)
        self.client_id = (
            settings.ingest_client_id
            if client_suffix is None
            else f"{settings.host_id}-{client_suffix}"
        )
        self.stats = IngestStats()
        self.metrics = IngestMetrics(self.client_id)
        self.ready = asyncio.Event()
        self.metrics_port: int | None = None
        self._born = 0
        self._renewing = False  # reconnecting for a newer Will (see _renew)
        self.left_group = False  # stopped in shared mode with nothing held: session ended
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``. A database or broker that cannot be reached is retried with
        backoff (said in the log and on /metrics), never a reason to exit: messages not yet
        committed stay unacknowledged in the broker's session meanwhile."""
        settings = self.settings
        server = None
        if settings.metrics_port is not None:
            server = MetricsServer(self.metrics, settings.metrics_host, settings.metrics_port)
            await server.start()
            self.metrics_port = server.port
        delay = RETRY_MIN_S
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self._serve(stop)
                    break
                except Exception as exc:  # classified: a dependency away, or a bug (raised)
                    dependency, error = dependency_of(exc), _first_error(exc)
                    if dependency is None:
                        raise
                self.metrics.dependency(dependency, False)
                if time.monotonic() - started > RETRY_MAX_S:
                    delay = RETRY_MIN_S  # it ran a while: a new outage starts afresh
                log.warning("ingest %s: %s unreachable (%s); retrying in %.1f s",
                            self.client_id, dependency, error, delay)  # fmt: skip
                self.stats.outages += 1
                await stopped_within(stop, delay * random.uniform(0.8, 1.0))
                delay = min(delay * 2, RETRY_MAX_S)
        finally:
            if server is not None:
                await server.stop()

    async def _serve(self, stop: asyncio.Event) -> None:
        """One life of the worker: connect to the database and the broker, take messages."""
        settings = self.settings
        self._born = now_ms()
        strict = settings.spec_strict
        url = settings.database_url
        async with (
            await connect(url, autocommit=True) as data,
            await connect(url, autocommit=True) as control,
        ):
            self.metrics.dependency("database", True)
            shared = SharedState(control, self.client_id)
            await shared.start()
            intake = Intake(shared, settings, self.metrics, self.stats)
            roster = await intake.admission.refresh()
            if not roster.devices and settings.unregistered_nodes == "refuse":
                log.warning(
                    "the registry names no edge node: every message will be refused until one"
                    " is imported (plantwire platform registry import)"
                )
            writer = BatchWriter(data, self.client_id, settings.pack_after_days)
            client = MqttClient(
                parse_mqtt_url(settings.mqtt_url),
                self.client_id,
                will_factory=self._will,
                clean_start=strict,
                session_expiry=0 if strict else 24 * 3600,
                manual_ack=not strict,
                queue_size=settings.queue_size,
            )
            await self._online(client, stop, intake, writer)

    def _will(self) -> Will:
        """The Will of the next CONNECT packet: STATE offline stamped now (Sparkplug 3.0,
        tck-id-host-topic-phid-death-payload-connect), the time the online message repeats.
        Runs in the MQTT network thread before every CONNECT, reconnects included."""
        self._born = max(now_ms(), self._born)
        payload = encode_state(False, self._born, self._commits)
        return Will(self._state_topic, payload, qos=1, retain=True)

    @property
    def _commits(self) -> bool:
        """Whether this host confirms commits to edge nodes (plantwire extension)."""
        return self.settings.commit_confirmations

    @functools.cached_property
    def _state_topic(self) -> str:  # (compared with every message's topic)
        return state_topic(self.settings.host_id)

    def _announce(self, client: MqttClient) -> None:
        """Publish STATE online (retained), e.g. again after a reconnect: with the timestamp
        of the Will the connection was made with (Sparkplug 3.0,
        tck-id-host-topic-phid-birth-payload-timestamp), so that an edge node comparing the
        two takes both."""
        state = encode_state(True, self._born, self._commits)
        self._background(client.publish(self._state_topic, state, retain=True))

    def _renew(self, client: MqttClient, offline_ts: int) -> None:
        """Another worker's Will, newer than this connection's, said offline: connect again
        with a Will stamped no earlier than it, then say online with that Will's timestamp
        (the on_connect hook), which edge nodes take since it is not older than the offline
        they saw."""
        if self._renewing:
            return
        self._renewing = True
        self._born = max(self._born, offline_ts)
        task = self._background(client.reconnect())
        task.add_done_callback(lambda _: setattr(self, "_renewing", False))

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # the broker went away again; the next reconnect announces once more
            log.info("STATE online not published: %s", exc)

    async def _online(
        self, client: MqttClient, stop: asyncio.Event, intake: Intake, writer: BatchWriter
    ) -> None:
        settings = self.settings
        await client.connect()
        self.metrics.dependency("broker", True)
        client.on_connect.append(lambda: self._announce(client))
        client.on_connect.append(lambda: self.metrics.dependency("broker", True))
        client.on_disconnect.append(lambda: self.metrics.dependency("broker", False))
        subscriptions = Subscriptions(
            client,
            self._state_topic,
            qos=0 if settings.spec_strict else 1,
            shared_group=settings.shared_group,
            everything=settings.unregistered_nodes == "admit",
        )
        try:
            persistent = not settings.spec_strict
            seen = await intake.state.nodes() if persistent else set()
            await subscriptions.start(intake.admission.roster, persistent, seen)
            # the same timestamp as the Will's, as Sparkplug 3.0 asks
            await client.publish(
                self._state_topic, encode_state(True, self._born, self._commits), retain=True
            )
            self.ready.set()
            log.info("ingest %s online at %s", self.client_id, client.address)
            queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
            written: asyncio.Queue[Batch | None] = asyncio.Queue()
            # a worker of a shared group takes messages until it has left the group
            leaving = persistent and settings.shared_group is not None
            done = asyncio.Event() if leaving else stop
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._write(client, writer, intake, queue, written))
                tg.create_task(self._control(client, intake, written))
                tg.create_task(self._upkeep(stop))
                tg.create_task(self._follow_registry(subscriptions, intake, stop))
                if leaving:
                    tg.create_task(self._leave(client, subscriptions, stop, done))
                await self._consume(client, intake, queue, done)
        finally:
            # (before the STATE below, which comes back to this session: it holds nothing)
            self.left_group = self.left_group and client.held == 0
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.publish(
                        self._state_topic, encode_state(False, now_ms(), self._commits), retain=True
                    ),
                    5,
                )
            await client.disconnect(end_session=self.left_group)
            if self.left_group:
                log.info("ingest %s left shared group %s: session ended",
                         self.client_id, settings.shared_group)  # fmt: skip

    async def _leave(
        self,
        client: MqttClient,
        subscriptions: Subscriptions,
        stop: asyncio.Event,
        done: asyncio.Event,
    ) -> None:
        """A graceful stop in a shared group: leave it. A persistent session that outlived
        the worker would stay a member: the broker would go on handing it its share, queued
        until a worker connects under its client id, and drop that when the session expires.
        So: unsubscribe the shared filters (no new message comes), take, commit and
        acknowledge what is still on its way (what was queued for this session comes all the
        same), and only when nothing is held (``client.held``) nor has arrived for
        :data:`LEAVE_QUIET_S` let the worker stop and end its session at the DISCONNECT.
        When that cannot be done (the broker or the database away, messages still held after
        :data:`LEAVE_MAX_S`) the session is kept, as after a crash: what it holds waits for
        the worker's return."""
        try:
            await stop.wait()
            try:
                await subscriptions.leave()
            except (MqttError, TimeoutError) as exc:
                log.warning("ingest %s could not leave its shared group (%s); its session is"
                            " kept", self.client_id, exc)  # fmt: skip
                return
            deadline = time.monotonic() + LEAVE_MAX_S
            while time.monotonic() < deadline:
                quiet = time.monotonic() - client.last_activity >= LEAVE_QUIET_S
                if quiet and client.held == 0 and client.connected.is_set():
                    self.left_group = True
                    return
                await asyncio.sleep(0.05)
            log.warning("ingest %s still holds %d messages; its session is kept",
                        self.client_id, client.held)  # fmt: skip
        finally:
            done.set()

    async def _follow_registry(
        self, subscriptions: Subscriptions, intake: Intake, stop: asyncio.Event
    ) -> None:
        """Keep the subscriptions equal to the registry's edge nodes (read every
        ``registry_refresh_s``): gateways registered or removed while the worker runs."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.registry_refresh_s)
            if stop.is_set():
                return
            try:
                await subscriptions.follow(await intake.admission.current())
            except (MqttError, TimeoutError) as exc:  # the broker away: sent at reconnect
                log.info("subscriptions to follow the registry not confirmed: %s", exc)

    # -- taking messages -------------------------------------------------------------------
    async def _consume(
        self,
        client: MqttClient,
        intake: Intake,
        queue: asyncio.Queue[Batch | None],
        stop: asyncio.Event,
    ) -> None:
        settings = self.settings
        max_age = settings.batch_age_ms / 1000
        max_messages = max(settings.inflight_window // 2, 1)
        batch, deadline = Batch(), math.inf
        next_retry = 0.0
        stopping = asyncio.ensure_future(stop.wait())
        receiving: asyncio.Future[Message] | None = None
        try:
            while not stop.is_set():
                message = None if receiving is not None else client.next_message_nowait()
                if message is None:
                    if receiving is None:
                        receiving = asyncio.ensure_future(client.next_message())
                    wait = deadline - time.monotonic()
                    if intake.parked:
                        wait = min(wait, PARKED_RETRY_S)
                    waiters: set[asyncio.Future[Any]] = {receiving, stopping}
                    done, _ = await asyncio.wait(
                        waiters,
                        timeout=None if math.isinf(wait) else max(wait, 0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if receiving in done:
                        message, receiving = receiving.result(), None
                now = time.monotonic()
                if message is not None:
                    self.stats.messages += 1
                    if not batch.messages:
                        batch.first_received, deadline = now, now + max_age
                    if self._own_state(client, message):
                        batch.messages.append(message)
                    elif not await intake.take(message, batch, now):
                        intake.park(message, now)
                    await asyncio.sleep(0)  # let the writer go on as soon as its I/O is done
                if intake.parked and now >= next_retry:
                    next_retry = now + PARKED_RETRY_S
                    await intake.refresh()
                    await intake.retry_parked(batch)
                    if batch.messages and math.isinf(deadline):
                        batch.first_received, deadline = now, now + max_age
                if batch.messages and (
                    now >= deadline
                    or batch.samples >= settings.batch_size
                    or len(batch.messages) >= max_messages
                ):
                    await queue.put(batch)
                    batch, deadline = Batch(), math.inf
                    if intake.shared:
                        await intake.refresh()
        finally:
            stopping.cancel()
            if receiving is not None:
                receiving.cancel()
        # Stopped: the writer stores what is left, then ends. Never after an error or a
        # cancellation (the task group's, when the writer met an outage): the writer may be
        # gone, and a put into its full queue would wait for ever, so the worker would neither
        # notice the outage nor retry. That batch stays unacknowledged: the broker delivers
        # it again.
        if batch.messages:
            await queue.put(batch)
        await queue.put(None)

    def _own_state(self, client: MqttClient, message: Message) -> bool:
        """Our own STATE topic: answer an 'offline' (another worker's Will) with 'online'."""
        if message.topic != self._state_topic:
            return False
        with contextlib.suppress(PayloadError):
            online, ts = decode_state(message.payload)
            if not online:
                log.info("STATE of %s said offline while this worker runs: online again",
                         self.settings.host_id)  # fmt: skip
                # Sparkplug 3.0 (tck-id-message-flow-hid-sparkplug-state-message-delivered):
                # online again with the timestamp of this connection's Will. An offline newer
                # than that (another worker's Will: edge nodes take only a STATE at least as
                # new as the last one they saw) is answered from a new connection, whose Will
                # is newer (tck-id-host-topic-phid-birth-payload-timestamp)
                if ts <= self._born:
                    self._announce(client)
                else:
                    self._renew(client, ts)
        return True

    # -- writing ---------------------------------------------------------------------------
    async def _write(
        self,
        client: MqttClient,
        writer: BatchWriter,
        intake: Intake,
        queue: asyncio.Queue[Batch | None],
        written: asyncio.Queue[Batch | None],
    ) -> None:
        metrics = self.metrics
        try:
            while (batch := await queue.get()) is not None:
                started = time.perf_counter()
                try:
                    result = await writer.write(batch)
                    inserted, careful = result.inserted, result.careful
                    for _ in range(result.conflicts):
                        intake.counted_dead("conflicting_value")
                except CONNECTION_ERRORS:
                    raise
                except Exception:  # rows one message made: find it, store the others
                    log.exception("batch of %d messages failed; writing them one by one",
                                  len(batch.messages))  # fmt: skip
                    inserted, careful = await self._one_by_one(batch, writer, intake), True
                for message in batch.messages:
                    client.ack(message)
                elapsed = time.perf_counter() - started
                stats = self.stats
                stats.samples_written += inserted
                stats.batches += 1
                stats.last_batch_ms = elapsed * 1000
                metrics.samples.inc(inserted)
                metrics.batch_seconds.observe(elapsed)
                metrics.batch_samples.observe(batch.samples)
                metrics.commit_lag.set(time.monotonic() - batch.first_received)
                if batch.oldest_source_ms:
                    metrics.source_lag.set(max(now_ms() - batch.oldest_source_ms, 0) / 1000)
                if careful:
                    metrics.careful_batches.inc()
                if batch.seqs or batch.rebirths:
                    written.put_nowait(batch)
        finally:
            written.put_nowait(None)

    async def _control(
        self, client: MqttClient, intake: Intake, written: asyncio.Queue[Batch | None]
    ) -> None:
        """After commits, off the write path: merge seq ledgers, ask for rebirths. A seq hole
        still open when the reorder timeout has passed is a gap even if its node has sent
        nothing since (tck-id-operational-behavior-host-reordering-rebirth)."""
        shared, wait_s = intake.state, intake.seq_wait_s
        done = False
        while not done:
            seqs: dict[tuple[str, str], list[SeqEntry]] = {}
            try:
                timeout = wait_s if shared.open_holes else None
                batches = [await asyncio.wait_for(written.get(), timeout)]
            except TimeoutError:  # the reorder timer: look at the open holes again
                batches = []
                seqs = {node: [] for node in shared.open_holes}
            while not written.empty():
                batches.append(written.get_nowait())
            done = bool(batches) and batches[-1] is None
            rebirths: dict[tuple[str, str], str] = {}
            for batch in batches:
                if batch is None:
                    continue
                for node, entries in batch.seqs.items():
                    seqs.setdefault(node, []).extend(entries)
                for node, reason in batch.rebirths.items():
                    rebirths.setdefault(node, reason)
            if seqs and self._commits:
                self._confirm(client, seqs)  # (the timer's empty entries confirm nothing)
            if seqs:
                for node in await shared.merge_seqs(seqs, wait_s):
                    self.metrics.seq_gaps.inc()
                    rebirths.setdefault(node, "seq_gap")
            for (group_id, edge_node_id), reason in sorted(rebirths.items()):
                holdoff = self.settings.rebirth_holdoff_s
                if await shared.claim_rebirth(group_id, edge_node_id, holdoff, reason):
                    await self._request_rebirth(client, group_id, edge_node_id, reason)

    def _confirm(self, client: MqttClient, seqs: dict[tuple[str, str], list[SeqEntry]]) -> None:
        """Tell each edge node which of its messages are committed (plantwire extension)."""
        for (group_id, edge_node_id), entries in seqs.items():
            by_birth: dict[int, list[int]] = {}
            for birth_ts, seq, is_birth in entries:
                if birth_ts is not None and seq is not None and not is_birth:
                    by_birth.setdefault(birth_ts, []).append(seq)
            topic = committed_topic(group_id, edge_node_id)
            for birth_ts, committed in by_birth.items():
                sent = client.publish_nowait(topic, Committed(birth_ts, tuple(committed)).encode())
                sent.add_done_callback(_observed)
                self.metrics.commit_confirmations.inc()

    async def _one_by_one(self, batch: Batch, writer: BatchWriter, intake: Intake) -> int:
        """Isolate the message a batch failed on: each alone, a failing one a dead letter."""
        inserted = 0
        for message in batch.messages:
            single = Batch()
            await intake.take(message, single, -math.inf)
            try:
                inserted += (await writer.write(single)).inserted
            except CONNECTION_ERRORS:
                raise
            except Exception as exc:
                log.exception("could not store %s", message.topic[:200])
                dead = Batch()
                intake.dead(dead, message, "storage_error", f"{type(exc).__name__}: {exc}")
                await writer.write(dead)
        return inserted

    async def _request_rebirth(
        self, client: MqttClient, group_id: str, edge_node_id: str, reason: str
    ) -> None:
        command = Payload(
            timestamp=now_ms(),
            metrics=(Metric(name="Node Control/Rebirth", datatype=DataType.Boolean, value=True),),
        )
        topic = Topic(group_id, MessageType.NCMD, edge_node_id)
        log.info("asking %s/%s for a rebirth (%s)", group_id, edge_node_id, reason)
        await client.publish(str(topic), encode_payload(command), qos=0)
        self.stats.rebirths_requested += 1
        self.metrics.rebirths.inc()

    # -- upkeep ----------------------------------------------------------------------------
    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Partitions and retention now and then; a roll-up pass every few seconds."""
        settings = self.settings
        next_maintenance = next_job = 0.0
        async with await connect(settings.database_url, autocommit=True) as conn:
            while not stop.is_set():
                if time.monotonic() >= next_maintenance:
                    next_maintenance = time.monotonic() + settings.maintenance_interval_s
                    try:
                        report = await maintain(
                            settings.database_url,
                            ahead_days=settings.partition_ahead_days,
                            retention_days=settings.retention_days,
                            pack_after_days=settings.pack_after_days,
                            compress_after_days=settings.compress_after_days,
                            policies=True,
                        )
                        if report.created or report.dropped or report.packed_rows:
                            log.info(
                                "partitions created %s, dropped %s; %d samples packed",
                                *(report.created, report.dropped, report.packed_rows),
                            )
                    except psycopg.errors.LockNotAvailable:
                        log.info("partition upkeep postponed: tables busy")
                    except psycopg.OperationalError:
                        raise
                    except psycopg.Error:
                        log.exception("partition upkeep failed; trying again later")
                    if settings.dead_letter_retention_days is not None:
                        await expire_dead_letters(conn, settings.dead_letter_retention_days)
                await roll_up(conn)
                if self.upkeep and time.monotonic() >= next_job:
                    next_job = time.monotonic() + settings.usage_rollup_interval_s
                    for job in self.upkeep:
                        try:
                            await job(conn)
                        except psycopg.OperationalError:
                            raise
                        except psycopg.Error:
                            log.exception("roll-up job failed; trying again later")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.rollup_interval_s)


async def roll_up(conn: psycopg.AsyncConnection[Any]) -> int:
    """One roll-up pass (closed minutes, late samples), unless another worker is doing it."""
    async with conn.transaction():
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (0x706C616E7403,))
        row = await cur.fetchone()
        if not row or not row[0]:
            return 0
        cur = await conn.execute("SELECT plantwire_rollup()")
        row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0
