"""The Sparkplug edge node with its durable buffer, against a real Mosquitto: nothing leaves
the buffer before the broker's PUBACK; what was held is replayed after a restart, births
first, flagged historical, each value exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plantwire_bus.extension import CLOCK_RATE
from plantwire_bus.mosquitto import MosquittoProcess, start_mosquitto
from plantwire_bus.payload import DataType
from plantwire_bus.timeline import TimeLine
from plantwire_bus.topics import encode_state, state_topic
from plantwire_edge import node as node_module
from plantwire_edge.channel import DeviceChannel
from plantwire_edge.clock import Clock
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import SLOW_WRITE_S, EdgeNode

from .conftest import LineClock, Probe, probe_on, unresolved

T0 = 1_767_225_600_000


def config(group: str, mqtt_url: str, buffer: Path, host: str | None) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "GW1",
            "mqtt_url": mqtt_url,
            "primary_host_id": host or "",
            "batch_ms": 20,
            "buffer": {"path": str(buffer)},
            "devices": [
                {
                    "kind": "opcua",
                    "device_id": "M1",
                    "endpoint": "opc.tcp://127.0.0.1:1",
                    "tags": [{"node": "nsu=urn:x;s=a", "metric": "Count"}],
                }
            ],
        }
    )


class SteppedClock:
    """A clock the test sets (e.g. a simulator's, running faster than the wall clock)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


@dataclass
class Running:
    """A running edge node with its device M1 and M1's Count metric, and a probe on its group."""

    node: EdgeNode
    dev: DeviceChannel
    count: int  # the alias of Count
    probe: Probe
    halt: asyncio.Event
    task: asyncio.Task[None]

    async def seen(self, kind: str, times: int) -> None:
        """Waits until the probe has seen ``times`` messages of ``kind`` (NBIRTH, DDEATH...)."""
        await self.probe.wait_for(lambda: self.probe.count(kind) == times, f"{kind} x{times}")

    async def stop(self) -> None:
        """Stops the node the way a gateway shuts down (NDEATH, disconnect)."""
        self.halt.set()
        await asyncio.wait_for(self.task, 10)


@asynccontextmanager
async def running(
    mqtt_url: str,
    group: str,
    tmp_path: Path,
    clock: Clock | None = None,
    host: str | None = None,
    host_online: bool = False,
) -> AsyncIterator[Running]:
    """An edge node on ``clock`` (the wall clock if None) waiting for the primary ``host``
    (none if None), whose STATE is retained as online before the node starts if
    ``host_online``; the node is stopped on leaving, and the host's STATE cleared."""
    async with probe_on(mqtt_url, group) as probe:
        if host and host_online:
            await probe.client.publish(state_topic(host), encode_state(True, T0), retain=True)
        node = EdgeNode(config(group, mqtt_url, tmp_path / "buf.db", host), clock=clock)
        dev = node.channel("M1")
        count = dev.metric("Count", DataType.UInt32)
        halt = asyncio.Event()
        run = Running(node, dev, count, probe, halt, asyncio.create_task(node.run(halt)))
        try:
            yield run
            await run.stop()
        finally:
            run.task.cancel()  # when the test failed: no node left running
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
            if host:
                await probe.client.publish(state_topic(host), b"", retain=True)


async def test_held_values_replay_after_restart_exactly_once(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    host = f"host-{group}"
    cfg = config(group, mqtt_url, tmp_path / "buf.db", host)
    async with probe_on(mqtt_url, group) as probe:
        # first run: the primary host is offline, so everything is held in the buffer
        node = EdgeNode(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        dev = node.channel("M1")
        count = dev.metric("Count", DataType.UInt32)
        mode = dev.metric("State/Mode", DataType.String)
        dev.set_online([(count, 0, T0), (mode, "AUTO", T0)])
        for i in range(1, 301):
            dev.put(count, i, T0 + i)
            if i % 50 == 0:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(node.connected.wait(), 10)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert probe.messages == []
        assert node.buffer.stats.depth_values == 302  # all held, on disk

        # second run, the host is online: births, then the backlog as history, then live
        node = EdgeNode(cfg)
        assert node.buffer.durable
        dev = node.channel("M1")
        assert dev.metric("Count", DataType.UInt32) == count  # aliases survive restarts
        assert dev.metric("State/Mode", DataType.String) == mode
        assert node.buffer.stats.depth_values == 302
        await probe.client.publish(state_topic(host), encode_state(True, T0), retain=True)
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        dev.set_online([(count, 300, T0 + 300), (mode, "AUTO", T0)])
        await probe.wait_for(lambda: node.buffer.stats.depth_values == 0, "backlog acknowledged")
        dev.put(count, 301, T0 + 301)
        await probe.wait_for(lambda: node.stats.values_acked == 305, "live value acknowledged")
        stop.set()
        await asyncio.wait_for(task, 10)
        await probe.client.publish(state_topic(host), b"", retain=True)

    kinds = [m.topic.split("/")[2] for m in probe.messages]
    assert kinds[:2] == ["NBIRTH", "DBIRTH"] and kinds[-1] == "NDEATH"
    bd_seqs = [
        m.value
        for p in (*probe.payloads("NBIRTH"), *probe.payloads("NDEATH"))
        for m in p.metrics
        if m.name == "bdSeq"
    ]
    assert bd_seqs == [1, 1]  # the first run's connection had 0: bdSeq survives restarts
    assert set(kinds[2:-1]) == {"DDATA"}
    assert probe.seqs() == list(range(len(kinds) - 1))
    data = [s for s in probe.values() if s.kind == "DDATA"]
    counts = [(s.value, s.ts) for s in data if s.metric == "Count"]
    # every held value once, in order, historical; then what the device reported on coming
    # back: its current value (a repeat the platform's keys absorb) and the live one
    assert counts == [(i, T0 + i) for i in range(0, 301)] + [(300, T0 + 300), (301, T0 + 301)]
    assert all(s.historical for s in data if s.ts < T0 + 300 and s.metric == "Count")
    assert not next(s for s in data if s.value == 301).historical
    assert node.stats.historical_sent >= 302


async def test_broker_outage_keeps_everything_until_puback(
    private_mosquitto: MosquittoProcess, group: str, tmp_path: Path
) -> None:
    broker = private_mosquitto
    cfg = config(group, broker.url, tmp_path / "buf.db", None)
    node = EdgeNode(cfg)
    dev = node.channel("M1")
    count = dev.metric("Count", DataType.UInt32)
    stop = asyncio.Event()
    async with probe_on(broker.url, group) as probe:
        task = asyncio.create_task(node.run(stop))
        dev.set_online([(count, 0, T0)])
        await probe.wait_for(lambda: node.stats.values_acked >= 1, "first value")
        broker.stop()
        for i in range(1, 201):  # produced while the broker is down
            dev.put(count, i, T0 + i)
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)
        assert node.buffer.stats.depth_values == 200
        assert not node.connected.is_set()
        # what reached the probe before the outage (its client reconnects to the restarted
        # broker by itself and may see the replay too)
        before = [(s.value, s.ts) for s in probe.values() if s.kind == "DDATA"]
        restarted = start_mosquitto(broker.log_path.parent, port=broker.port)
        try:
            async with probe_on(broker.url, group) as after:
                await after.wait_for(
                    lambda: node.buffer.stats.depth_values == 0, "backlog acknowledged", timeout=30
                )
                stop.set()
                await asyncio.wait_for(task, 10)
        finally:
            restarted.stop()
    replayed = [(s.value, s.ts) for s in after.values() if s.kind == "DDATA"]
    assert before + replayed == [(i, T0 + i) for i in range(0, 201)]
    assert all(s.historical for s in after.values() if s.kind == "DDATA")
    assert [m.topic.split("/")[2] for m in after.messages][:2] == ["NBIRTH", "DBIRTH"]


async def test_backlog_of_a_device_lost_meanwhile_is_sent_between_dated_birth_and_death(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    host = f"host-{group}"
    async with running(mqtt_url, group, tmp_path, host=host) as run:
        dev, count, probe = run.dev, run.count, run.probe
        dev.set_online([(count, 0, T0)])
        for i in range(1, 51):
            dev.put(count, i, T0 + i)
        await asyncio.sleep(0.2)
        dev.set_offline()  # the machine is switched off while the host is away
        lost_at = dev.offline_at
        await asyncio.sleep(0.2)
        await probe.client.publish(state_topic(host), encode_state(True, T0), retain=True)
        await run.seen("DDEATH", 1)
    kinds = [m.topic.split("/")[2] for m in probe.messages]
    assert kinds == ["NBIRTH", "DBIRTH", "DDATA", "DDEATH", "NDEATH"]
    birth, death = probe.payloads("DBIRTH")[0], probe.payloads("DDEATH")[0]
    assert birth.timestamp == T0 and death.timestamp == lost_at  # the session it really had
    data = [(s.value, s.ts, s.historical) for s in probe.values() if s.kind == "DDATA"]
    assert data == [(i, T0 + i, True) for i in range(51)]


async def test_a_device_being_connected_is_born_before_its_first_values(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """Values an adapter reports while it brings a device online (the initial values it reads
    so that the birth has them) wait for that birth: not sent at once as the backlog of a
    device that is gone, born and dead again before its real birth."""
    async with running(mqtt_url, group, tmp_path) as run:
        dev, count, probe = run.dev, run.count, run.probe
        await run.seen("NBIRTH", 1)
        dev.set_connecting()
        for i in range(1, 4):
            dev.put(count, i, T0 + i)
        await run.node.stored()  # in the buffer, and the node pumped once since
        dev.set_online([])
        await run.seen("DDATA", 1)
    kinds = [m.topic.split("/")[2] for m in probe.messages]
    assert kinds[:3] == ["NBIRTH", "DBIRTH", "DDATA"] and "DDEATH" not in kinds
    births = [(s.value, s.ts) for s in probe.values() if s.kind == "DBIRTH"]
    assert births == [(3, T0 + 3)]
    data = [(s.value, s.ts) for s in probe.values() if s.kind == "DDATA"]
    assert data == [(i, T0 + i) for i in range(1, 4)]


async def test_values_awaited_at_once_are_stored_and_sent_without_a_tick(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """``stored(at_once=True)`` (the OPC UA adapter's publish responses, which come every
    ``batch_ms`` or less often) stores and publishes in the caller's own wake-up of the loop,
    not at the node's next tick: here a tick a minute, which also must not hold up a stop."""
    cfg = config(group, mqtt_url, tmp_path / "buf.db", None)
    node = EdgeNode(cfg.model_copy(update={"batch_ms": 60_000}))
    dev = node.channel("M1")
    count = dev.metric("Count", DataType.UInt32)
    stop = asyncio.Event()
    async with probe_on(mqtt_url, group) as probe:
        task = asyncio.create_task(node.run(stop))
        await probe.wait_for(lambda: probe.count("NBIRTH") == 1, "NBIRTH")
        dev.set_online([])

        def sent() -> int:
            return sum(s.kind == "DDATA" for s in probe.values())

        for i in range(1, 4):
            dev.put(count, i, T0 + i)
            await asyncio.wait_for(node.stored(("test/seq", str(i)), at_once=True), 10)
            assert node.buffer.meta("test/seq") == str(i)  # committed with its values
            await probe.wait_for(lambda: sent() == i, f"value {i}")  # noqa: B023 - awaited here
        stop.set()
        await asyncio.wait_for(task, 10)
    data = [(s.value, s.ts) for s in probe.values() if s.kind == "DDATA"]
    assert data == [(i, T0 + i) for i in range(1, 4)]


async def test_births_deaths_and_payloads_carry_the_injected_clock(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """A node on a simulator's clock stamps its Sparkplug sessions on the machines' time line,
    not the wall clock's; the primary host's STATE was retained before the node connected."""
    clock = SteppedClock(T0)
    async with running(mqtt_url, group, tmp_path, clock, f"host-{group}", True) as run:
        dev, count, probe = run.dev, run.count, run.probe
        dev.set_online([(count, 0, T0 - 5_000)])
        await run.seen("DBIRTH", 1)
        clock.now = T0 + 60_000
        dev.put(count, 1, T0 + 59_000)
        await probe.wait_for(lambda: any(s.value == 1 for s in probe.values()), "DDATA")
        clock.now = T0 + 120_000
        dev.set_offline()
        await run.seen("DDEATH", 1)
        await run.stop()
        await run.seen("NDEATH", 1)
    assert [p.timestamp for p in probe.payloads("NBIRTH")] == [T0]
    # its clock's rate: 1 for a clock that is no simulator's time line
    assert [{m.name: m.value for m in p.metrics}[CLOCK_RATE] for p in probe.payloads("NBIRTH")] == [
        1.0
    ]
    assert [p.timestamp for p in probe.payloads("DBIRTH")] == [T0]
    assert [p.timestamp for p in probe.payloads("DDATA")][-1] == T0 + 60_000
    assert [p.timestamp for p in probe.payloads("DDEATH")] == [T0 + 120_000]
    assert [p.timestamp for p in probe.payloads("NDEATH")] == [T0 + 120_000]
    # the values keep their own (device) timestamps
    assert {(s.value, s.ts) for s in probe.values()} == {(0, T0 - 5_000), (1, T0 + 59_000)}


async def test_a_device_read_through_a_broker_outage_is_born_again_as_of_the_loss(
    private_mosquitto: MosquittoProcess, group: str, tmp_path: Path
) -> None:
    """Store and forward: the gateway kept reading the device while its uplink was down, so
    its DBIRTH on the new connection is dated at the last publish of the lost one (the host's
    session of it goes on); a device lost meanwhile is born at the time of the birth."""
    broker = private_mosquitto
    clock = SteppedClock(T0)
    cfg = config(group, broker.url, tmp_path / "buf.db", None)
    cfg = cfg.model_copy(update={"devices": [*cfg.devices, cfg.devices[0].model_copy(
        update={"device_id": "M2"})]})  # fmt: skip
    node = EdgeNode(cfg, clock=clock)
    kept, lost = node.channel("M1"), node.channel("M2")
    k1, k2 = kept.metric("Count", DataType.UInt32), lost.metric("Count", DataType.UInt32)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    kept.set_online([(k1, 0, T0)])
    lost.set_online([(k2, 0, T0)])
    async with probe_on(broker.url, group) as probe:
        await probe.wait_for(lambda: node.stats.values_acked >= 2, "births and first values")
        clock.now = T0 + 10_000
        kept.put(k1, 1, T0 + 10_000)
        await probe.wait_for(lambda: node.stats.values_acked >= 3, "the last value before")
    broker.stop()
    await asyncio.sleep(0.5)
    assert not node.connected.is_set()
    clock.now = T0 + 30_000
    kept.put(k1, 2, T0 + 30_000)  # read while the uplink is down
    lost.set_offline()
    clock.now = T0 + 60_000
    lost.set_online([(k2, 0, T0 + 60_000)])
    restarted = start_mosquitto(broker.log_path.parent, port=broker.port)
    try:
        async with probe_on(broker.url, group) as after:
            await after.wait_for(lambda: after.count("DBIRTH") >= 2, "births", timeout=30)
            await after.wait_for(lambda: node.buffer.stats.depth_values == 0, "backlog", 30)
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        restarted.stop()
    births = {d: after.payloads("DBIRTH", d) for d in ("M1", "M2")}
    assert [p.timestamp for p in after.payloads("NBIRTH")] == [T0 + 60_000]
    assert [p.timestamp for p in births["M1"]] == [T0 + 10_000]  # read all along: goes on
    assert [p.timestamp for p in births["M2"]] == [T0 + 60_000]  # lost meanwhile: new session
    assert (2, T0 + 30_000) in {(s.value, s.ts) for s in after.values() if s.kind == "DDATA"}


async def test_a_rebirth_names_the_ordinal_of_a_current_value_not_first_in_its_millisecond(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """Two values of a metric within one millisecond go out as ordinals 0 and 1; a later
    DBIRTH repeats the current one with its ordinal, so the platform does not take it for a
    rival of the first (a conflicting value)."""
    async with running(mqtt_url, group, tmp_path) as run:
        dev, count, probe = run.dev, run.count, run.probe
        dev.set_online([(count, 0, T0)])
        await run.seen("DBIRTH", 1)
        dev.put(count, 1, T0 + 5)
        dev.put(count, 2, T0 + 5)
        await probe.wait_for(lambda: run.node.stats.values_acked >= 3, "the two values")
        dev.put(dev.metric("Speed", DataType.Double), 1.5, T0 + 6)  # not in the birth
        await run.seen("DBIRTH", 2)
    rebirth = {m.name: m for m in probe.payloads("DBIRTH")[1].metrics}
    assert (rebirth["Count"].value, rebirth["Count"].timestamp) == (2, T0 + 5)
    assert rebirth["Count"].ordinal == 1
    data = [(s.value, s.ts) for s in probe.values() if s.kind == "DDATA" and s.metric == "Count"]
    assert data == [(0, T0), (1, T0 + 5), (2, T0 + 5)]


async def test_a_device_found_again_is_born_as_of_when_it_was_found(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """On an accelerated clock the wait for the next pump is simulated time: a device found
    again is born as of when its adapter found it, not when the birth went out."""
    clock = SteppedClock(T0)
    async with running(mqtt_url, group, tmp_path, clock) as run:
        dev, count, probe = run.dev, run.count, run.probe
        dev.set_online([(count, 0, T0)])
        await run.seen("DBIRTH", 1)
        clock.now = T0 + 10_000
        dev.set_offline()
        await run.seen("DDEATH", 1)
        clock.now = T0 + 30_000
        dev.set_online([(count, 0, T0 + 30_000)])
        clock.now = T0 + 90_000  # the pump comes a simulated minute later
        await run.seen("DBIRTH", 2)
    assert [p.timestamp for p in probe.payloads("DDEATH")] == [T0 + 10_000]
    assert [p.timestamp for p in probe.payloads("DBIRTH")] == [T0, T0 + 30_000]


async def test_a_device_read_before_it_is_found_is_born_after_its_death_on_a_held_clock(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """A simulation holds its clock at its start until every device is born: values read
    before the adapter finds the device go out as a lost device's backlog (born, then dead at
    the held time), and the device found then is born a millisecond later, not in its death's
    millisecond (where the host took the birth for the dead one's: no session)."""
    async with running(mqtt_url, group, tmp_path, SteppedClock(T0)) as run:
        dev, count, probe = run.dev, run.count, run.probe
        dev.put(count, 0, T0)  # the first notification, before the adapter says online
        await run.seen("DDEATH", 1)  # the backlog's
        dev.set_online([(count, 0, T0)])
        await run.seen("DBIRTH", 2)  # the found device's
    assert [p.timestamp for p in probe.payloads("DDEATH")] == [T0]
    assert [p.timestamp for p in probe.payloads("DBIRTH")] == [T0, T0 + 1]


async def test_a_lost_device_with_a_new_metric_in_its_backlog_is_born_again_after_its_birth(
    mqtt_url: str, group: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device never found (its adapter read part of it, then lost the session) is born for
    its backlog as of the backlog's first value. With the publish window full (a loaded
    broker or host), a metric read after that birth reaches a later batch of the backlog
    and births the device again: stamped no earlier than the birth before, since a host
    resolves a DDATA against the newest birth stamped no later than it. Without the fix the
    second DBIRTH was stamped at the node's birth (T0), before the first (T0 + 10 s), and
    the new metric's DDATA met a birth without it (platform: unknown_metric)."""
    clock = SteppedClock(T0)
    async with running(mqtt_url, group, tmp_path, clock) as run:
        dev, count, probe, node = run.dev, run.count, run.probe, run.node
        await run.seen("NBIRTH", 1)
        monkeypatch.setattr(node_module, "WINDOW", 0)  # nothing can be sent
        clock.now = T0 + 20_000
        dev.put(count, 0, T0 + 10_000)  # two batches of Count alone
        await probe.wait_for(lambda: len(dev.unsent) == 1, "the first batch stored")
        dev.put(count, 1, T0 + 10_001)
        await probe.wait_for(lambda: len(dev.unsent) == 2, "the second batch stored")
        monkeypatch.setattr(node_module, "WINDOW", 1)  # one message at a time
        node._pump()  # born with Count, its first batch sent, the second waits
        dev.put(dev.metric("Speed", DataType.Double), 1.5, T0 + 15_000)  # read after
        await run.seen("DDEATH", 1)
    births = probe.payloads("DBIRTH")
    assert [{m.name for m in p.metrics} for p in births] == [{"Count"}, {"Count", "Speed"}]
    assert [p.timestamp for p in births] == [T0 + 10_000, T0 + 10_000]
    assert unresolved(probe, "M1") == []


async def test_commits_leave_the_event_loop_once_one_is_slow(
    mqtt_url: str, group: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buffer commits run on the event loop's thread (cheaper than a hand-over to a thread);
    after one that took longer than SLOW_WRITE_S (a stalling disk) the writer thread takes
    them, and every value is stored and sent all the same."""
    node = EdgeNode(config(group, mqtt_url, tmp_path / "buf.db", None))
    write = node.buffer.write
    writes: list[tuple[int, float]] = []  # (thread, seconds) of each commit

    def stalling(*args: Any) -> Any:
        started = time.monotonic()
        if len(writes) == 2:
            time.sleep(SLOW_WRITE_S * 2)  # the disk stalls once
        result = write(*args)
        writes.append((threading.get_ident(), time.monotonic() - started))
        return result

    monkeypatch.setattr(node.buffer, "write", stalling)
    loop_thread = threading.get_ident()
    dev = node.channel("M1")
    count = dev.metric("Count", DataType.UInt32)
    stop = asyncio.Event()
    async with probe_on(mqtt_url, group) as probe:
        task = asyncio.create_task(node.run(stop))
        dev.set_online([(count, 0, T0)])
        for i in range(1, 31):
            dev.put(count, i, T0 + i)
            await asyncio.sleep(0.05)
        await probe.wait_for(lambda: node.stats.values_acked == 31, "every value acknowledged")
        stop.set()
        await asyncio.wait_for(task, 10)
    assert writes[0][0] == loop_thread
    slow = next(i for i, (_, took) in enumerate(writes) if took > SLOW_WRITE_S)
    after = writes[slow + 1 :]
    assert after and all(thread != loop_thread for thread, _ in after[:-1])  # last: shutdown
    values = sorted((s.value, s.ts) for s in probe.values() if s.kind == "DDATA")
    assert values == [(i, T0 + i) for i in range(31)]


async def test_metadata_being_committed_in_the_writer_thread_is_what_the_node_says(
    mqtt_url: str, group: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EdgeNode.meta`` says what the buffer will hold, also while the flush that carries it
    is being committed by the writer thread (a slow disk): an OPC UA adapter that takes over its
    subscription then asks again only for messages after the last one the node has (e662aa8),
    not for ones whose values are in that commit already."""
    node = EdgeNode(config(group, mqtt_url, tmp_path / "buf.db", None))
    write = node.buffer.write
    slowed, committing, release = threading.Event(), threading.Event(), threading.Event()

    def stalling(groups: Any, acked: Any, meta: dict[str, str]) -> Any:
        if not slowed.is_set():  # the first commit stalls: the writer thread takes the next
            time.sleep(SLOW_WRITE_S * 2)
            slowed.set()
        elif "seq" in meta:
            committing.set()
            release.wait(10)
        return write(groups, acked, meta)

    monkeypatch.setattr(node.buffer, "write", stalling)
    dev = node.channel("M1")
    count = dev.metric("Count", DataType.UInt32)
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        dev.set_online([(count, 0, T0)])
        assert await asyncio.to_thread(slowed.wait, 10)
        dev.put(count, 1, T0 + 1)
        storing = asyncio.create_task(node.stored(("seq", "7")))
        assert await asyncio.to_thread(committing.wait, 10), "not in the writer thread"
        assert node.meta("seq") == "7"  # in the commit under way
        release.set()
        await asyncio.wait_for(storing, 10)
        assert node.meta("seq") == node.buffer.meta("seq") == "7"
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_replay_that_catches_up_with_the_wall_clock_is_declared_again(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """A gateway on a replay at 60x declares rate 60 in its NBIRTH; once the replay has caught
    up with the wall clock (rate 1 from then on) it is born again declaring 1, so that the host
    places its Will by the rate in force."""
    now = time.time()
    clock = LineClock(TimeLine(round(now * 1000) - 3_600_000, 60.0, now, catch_up=True))
    async with running(mqtt_url, group, tmp_path, clock=clock) as run:
        run.dev.set_online([(run.count, 0, clock.now_ms())])
        await run.seen("DBIRTH", 1)
        now = time.time()  # the replay reaches the wall clock: live from now on
        clock.line = TimeLine(round(now * 1000), 60.0, now, catch_up=True)
        await run.seen("DBIRTH", 2)
    births = run.probe.payloads("NBIRTH")
    assert [{m.name: m.value for m in p.metrics}[CLOCK_RATE] for p in births] == [60.0, 1.0]
