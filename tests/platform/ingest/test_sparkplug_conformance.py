"""Sparkplug 3.0 requirements of a host application (issue 12), each test named after its id,
against the real ``plantwire platform ingest`` process and a real Mosquitto."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from plantwire_bus.mosquitto import MosquittoProcess, start_mosquitto
from plantwire_bus.mqtt import Message, MqttClient, parse_mqtt_url
from plantwire_bus.payload import decode_payload
from plantwire_bus.topics import MessageType, Topic, decode_state, state_topic

from ...mqtt_tap import CONNECT, Tap, mqtt_tap
from .test_worker import WorkerFactory, buffered_hour, start_worker

__all__ = ["start_worker"]  # the fixture

PLANTWIRE = Path(sys.executable).parent / "plantwire"


async def next_state(probe: MqttClient, timeout: float = 30) -> tuple[bool, int, Message]:
    message = await asyncio.wait_for(probe.next_message(), timeout)
    online, ts = decode_state(message.payload)
    return online, ts, message


@pytest.mark.sparkplug(
    "tck-id-host-topic-phid-death-payload-connect",
    "tck-id-message-flow-phid-sparkplug-state-publish-payload-timestamp",
    "tck-id-payloads-state-birth-payload",
    "tck-id-operational-behavior-host-application-connect-birth-payload",
)
async def test_tck_id_host_topic_phid_birth_payload_timestamp(
    private_mosquitto: MosquittoProcess, database_url: str, unique: str
) -> None:
    """The STATE 'online' timestamp is the one of the Will the connection was made with: after
    the broker restarted (a reconnect of the same process, whose CONNECT carries a Will stamped
    anew) as at first, and the Will the broker publishes when the host dies (SIGKILL) carries
    it too."""
    broker = private_mosquitto
    host = f"conf-{unique}"
    env = dict(os.environ, DATABASE_URL=database_url, MQTT_URL=broker.url, PLANTWIRE_HOST_ID=host)
    ingest = await asyncio.create_subprocess_exec(
        str(PLANTWIRE), "--log-level", "WARNING", "platform", "ingest", env=env
    )
    restarted: MosquittoProcess | None = None
    try:
        async with MqttClient(parse_mqtt_url(broker.url), f"probe-{unique}") as probe:
            await probe.subscribe(state_topic(host))
            online, first, _ = await next_state(probe)
            while not online:  # a retained 'offline' of an earlier life would come first
                online, first, _ = await next_state(probe)
            broker.kill()  # the ingest reconnects by itself, the same process
            restarted = start_mosquitto(broker.log_path.parent, port=broker.port)
            # killed within its first autosave, the broker kept no retained message: the
            # next STATE is the host's announcement on its new connection (live or retained,
            # as the probe's own reconnect falls before or after it)
            online, second, _ = await next_state(probe, 40)
            while online and second == first:  # the first online message again: its PUBACK
                # was lost with the broker, so paho sent it once more on the new connection
                online, second, _ = await next_state(probe, 40)
            assert online, "the host is alive: its STATE says online"
            assert second > first  # the reconnect's CONNECT: a Will of its own time
            ingest.send_signal(signal.SIGKILL)
            await asyncio.wait_for(ingest.wait(), 10)
            while online:  # (the probe's own resubscription may bring the retained one again)
                online, will_ts, _ = await next_state(probe, 30)  # keep-alive 4 s: within 6 s
                assert will_ts == second
            # the Will the broker published carries the connection's timestamp
    finally:
        if ingest.returncode is None:
            ingest.kill()
            await ingest.wait()
        if restarted is not None:
            restarted.stop()


async def test_tck_id_operational_behavior_host_reordering_rebirth(
    start_worker: WorkerFactory, mqtt_url: str, unique: str
) -> None:
    """A seq gap after the node answered a rebirth request with a new birth is asked about
    again at once, whatever the hold-off (which keeps one gap to one request)."""
    group = f"R{unique}"
    t0 = time.time_ns() // 1_000_000 - 3_600_000
    async with (
        start_worker(rebirth_holdoff_s=300),
        MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge,
    ):
        await edge.subscribe(str(Topic(group, MessageType.NCMD, "GW1")))
        for life, born in enumerate((t0, t0 + 1_800_000)):
            messages, _ = buffered_hour(group, born)
            for topic, payload in messages[:10] + messages[11:20]:  # seq 10 is lost
                await edge.publish(topic, payload)
            command = await asyncio.wait_for(edge.next_message(), 15)
            rebirth = decode_payload(command.payload).metrics
            assert [(m.name, m.value) for m in rebirth] == [("Node Control/Rebirth", True)], life
        with pytest.raises(TimeoutError):  # and nothing more
            await asyncio.wait_for(edge.next_message(), 1.5)


@pytest.mark.sparkplug(
    "tck-id-operational-behavior-host-reordering-start",
    "tck-id-operational-behavior-host-reordering-rebirth",
    "tck-id-operational-behavior-host-reordering-success",
)
async def test_a_worker_alone_with_a_reorder_timeout(
    start_worker: WorkerFactory, mqtt_url: str, unique: str
) -> None:
    """One worker (no shared subscription) given a reorder timeout: seq 3, late but within it,
    asks for nothing; seq 7 never comes and the node then falls silent: the host asks for a
    rebirth once the timeout has run out, not before, and once."""
    group = f"T{unique}"
    wait_ms = 3_000  # well above the stalls of a loaded machine between two publishes
    messages, _ = buffered_hour(group, time.time_ns() // 1_000_000 - 3_600_000)
    async with (
        start_worker(reorder_wait_ms=wait_ms),
        MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}") as edge,
    ):
        await edge.subscribe(str(Topic(group, MessageType.NCMD, "GW1")))
        for i in (0, 1, 2, 4):  # births (seq 0, 1), then data seq 2 and 4
            await edge.publish(*messages[i])
        await asyncio.sleep(0.3)
        await edge.publish(*messages[3])  # late, within the timeout
        for i in (5, 6, 8):  # 7 never comes
            await edge.publish(*messages[i])
        hole = time.monotonic()
        command = await asyncio.wait_for(edge.next_message(), 15)
        asked_after = time.monotonic() - hole
        rebirth = decode_payload(command.payload).metrics
        assert [(m.name, m.value) for m in rebirth] == [("Node Control/Rebirth", True)]
        assert asked_after >= wait_ms / 1000 - 0.3  # not before the timeout
        with pytest.raises(TimeoutError):  # and nothing more: 3 was not asked about
            await asyncio.wait_for(edge.next_message(), wait_ms / 1000)


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
async def test_a_pysparkplug_edge_node_sees_the_host_die(
    strict: bool, mqtt_url: str, database_url: str, unique: str
) -> None:
    """A third-party edge node whose Sparkplug messages are pysparkplug's (its payloads, its
    reading of STATE; pysparkplug's own MQTT client does not run on paho 2) publishes while
    the host is online and stops on a valid offline STATE: after the ingest is SIGKILLed it
    stops within 1.5 keep-alives of the ingest (4 s) and a margin, in default and strict mode;
    the Will it acts on carries the online message's timestamp."""
    import pysparkplug as ps

    host = f"die-{unique}"
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        MQTT_URL=mqtt_url,
        PLANTWIRE_HOST_ID=host,
        PLANTWIRE_SPEC_STRICT=str(strict).lower(),
    )
    ingest = await asyncio.create_subprocess_exec(
        str(PLANTWIRE), "--log-level", "WARNING", "platform", "ingest", env=env
    )
    group = f"P{unique}"
    seen: list[ps.State] = []
    try:
        async with MqttClient(parse_mqtt_url(mqtt_url), f"py-{unique}") as edge:
            await edge.subscribe(str(ps.Topic(message_type=ps.MessageType.STATE,
                                               sparkplug_host_id=host)))  # fmt: skip

            async def state(timeout: float) -> ps.State:
                while True:  # an older STATE than the last one is ignored, as Sparkplug asks
                    message = await asyncio.wait_for(edge.next_message(), timeout)
                    decoded = ps.State.decode(message.payload)
                    if not seen or decoded.timestamp >= seen[-1].timestamp:
                        seen.append(decoded)
                        return decoded

            while not (await state(30)).online:
                pass
            bd_seq = ps.Metric(timestamp=None, name="bdSeq", datatype=ps.DataType.INT64, value=0)
            birth = ps.NBirth(timestamp=ps.get_current_timestamp(), seq=0, metrics=(bd_seq,))
            await edge.publish(f"spBv1.0/{group}/NBIRTH/PY-GW", birth.encode())
            ingest.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.wait_for(ingest.wait(), 10)
            offline = await state(1.5 * 4 + 4)  # TimeoutError: it would still be publishing
            elapsed = time.monotonic() - killed
        assert not offline.online and elapsed <= 1.5 * 4 + 4
        assert offline.timestamp == seen[0].timestamp  # the Will of the online connection
    finally:
        if ingest.returncode is None:
            ingest.kill()
            await ingest.wait()


@pytest.mark.sparkplug(
    "tck-id-host-topic-phid-birth-payload-timestamp",
    "tck-id-message-flow-hid-sparkplug-state-message-delivered",
)
async def test_workers_sharing_a_host_id_say_online_with_their_wills_timestamp(
    mqtt_url: str, database_url: str, unique: str
) -> None:
    """Ingest processes A, B, C of one host id (a shared subscription), each through a tap
    that reads its CONNECT packets' Wills. B, connected after A, is SIGKILLed: its Will says
    offline with a newer timestamp than A's, so A connects again and says online with the
    timestamp of that new CONNECT's Will, not older than B's offline. Then A is SIGKILLed
    under C, connected after A's new connection: C says online with its own Will's timestamp,
    on the connection it has."""
    host = f"share-{unique}"
    processes: list[asyncio.subprocess.Process] = []

    async def start(name: str, tap_url: str) -> asyncio.subprocess.Process:
        env = dict(
            os.environ, DATABASE_URL=database_url, MQTT_URL=tap_url, PLANTWIRE_HOST_ID=host,
            PLANTWIRE_SHARED_GROUP=f"g{unique}", PLANTWIRE_CLIENT_ID=f"{host}-{name}",
        )  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            str(PLANTWIRE), "--log-level", "WARNING", "platform", "ingest", env=env
        )
        processes.append(process)
        return process

    def wills(tap: Tap) -> list[int]:
        """The Will timestamps of the CONNECT packets through ``tap``, in order."""
        return [decode_state(p.will.payload)[1] for p in tap.of(CONNECT) if p.will is not None]

    def onlines(tap: Tap) -> list[int]:
        states = [decode_state(p.payload) for p in tap.published("STATE")]
        return [ts for online, ts in states if online]

    async def until(probe: MqttClient, online: bool, newer_than: int = 0) -> int:
        """The timestamp of the next STATE saying ``online``, newer than ``newer_than`` (a
        worker may say online twice with one timestamp: again when its resubscription
        brings back the retained offline it answered)."""
        deadline = time.monotonic() + 30
        while True:
            said, at, _ = await next_state(probe, deadline - time.monotonic())
            if said == online and at > newer_than:
                return at

    try:
        async with (
            mqtt_tap(mqtt_url) as tap_a,
            mqtt_tap(mqtt_url) as tap_b,
            mqtt_tap(mqtt_url) as tap_c,
            MqttClient(parse_mqtt_url(mqtt_url), f"probe-{unique}") as probe,
        ):
            await probe.subscribe(state_topic(host))
            a = await start("a", tap_a.url)
            await until(probe, True)
            (a_will,) = wills(tap_a)
            await asyncio.sleep(0.05)  # a later millisecond
            b = await start("b", tap_b.url)
            b_online = await until(probe, True, a_will)
            assert wills(tap_b) == [b_online] and b_online > a_will
            b_will = b_online

            b.send_signal(signal.SIGKILL)
            await b.wait()
            assert await until(probe, False) == b_will  # B's Will
            renewed = await until(probe, True, a_will)
            assert renewed >= b_will  # edge nodes take it after B's offline
            assert wills(tap_a) == [a_will, renewed]  # a new CONNECT, its Will the same
            assert onlines(tap_a)[-1] == renewed

            await asyncio.sleep(0.05)
            c = await start("c", tap_c.url)
            c_will = await until(probe, True, renewed)
            assert wills(tap_c) == [c_will]
            a.send_signal(signal.SIGKILL)
            await a.wait()
            assert await until(probe, False) == renewed  # A's Will, older than C's
            assert await until(probe, True, renewed) == c_will
            assert wills(tap_c) == [c_will]  # on the connection it has
            c.send_signal(signal.SIGINT)
            await asyncio.wait_for(c.wait(), 20)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
