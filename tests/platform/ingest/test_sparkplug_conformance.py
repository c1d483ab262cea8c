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
