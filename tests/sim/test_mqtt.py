"""MQTT stations and energy boxes heard by an independent subscriber (amqtt's client, not the
paho wrapper the simulator publishes with) on a real Mosquitto, read with the JSON paths of the
generated gateway config and compared with the ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from amqtt.client import QOS_1, MQTTClient

from plantwire_bus.mosquitto import MosquittoProcess
from plantwire_sim.factory import Factory, run_factory
from plantwire_sim.faults import CLOCK_RESET_MS
from plantwire_sim.scenario import Scenario, parse_scenario
from plantwire_sim.truth import StateRecord

SCENARIO = """
name = "mqtt"
seed = 5

[[enterprises]]
code = "E{token}"
uscc = "91320594MA1MXY3B2K"
name = "Station Works"

[[enterprises.sites]]
code = "S1"
name = "Hall"
edge_node = "GW1"

[[enterprises.sites.lines]]
code = "L1"
name = "Line"

[[enterprises.sites.equipment]]
code = "STN-1"
name = "Assembly station"
line = "L1"
control_type = "MANUAL"
declared_nc = false
protocol = "mqtt"
program = [
  {{ mode = "MANUAL", execution = "EXECUTING", seconds = 2 }},
  {{ mode = "MANUAL", execution = "IDLE", seconds = 1 }},
]
params = {{ operator = "W9" }}
behaviour = {{ scrap_rate = 0.3 }}

[[enterprises.sites.equipment]]
code = "EM-1"
name = "Washer with energy box"
line = "L1"
control_type = "PLC"
declared_nc = true
protocol = "mqtt"
profile = "energy"
program = [
  {{ mode = "AUTO", execution = "EXECUTING", seconds = 3 }},
  {{ mode = "AUTO", execution = "IDLE", seconds = 2 }},
]
"""
PROTOCOLS = frozenset({"mqtt"})


class Listener:
    """An amqtt subscriber collecting (topic, payload, retained)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []

    def take(self) -> list[tuple[str, bytes, bool]]:
        out, self.messages = self.messages, []
        return out


@contextlib.asynccontextmanager
async def listening(broker: MosquittoProcess, topic: str) -> AsyncIterator[Listener]:
    client = MQTTClient(config={"auto_reconnect": False})
    await client.connect(broker.url)
    await client.subscribe([(topic, QOS_1)])
    listener = Listener()

    async def collect() -> None:
        while True:
            message = await client.deliver_message()
            if message is not None:
                listener.messages.append((message.topic, bytes(message.data), bool(message.retain)))

    task = asyncio.create_task(collect())
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.disconnect()


def resolve(doc: Any, path: str) -> Any:
    """An independent reading of a gateway field path (dotted keys, [n] indexes)."""
    for part in path.split("."):
        match = re.fullmatch(r"([^\[]+)((?:\[\d+\])*)", part)
        assert match is not None, path
        doc = doc[match[1]]
        for index in re.findall(r"\[(\d+)\]", match[2]):
            doc = doc[int(index)]
    return doc


def ts_of(doc: dict[str, Any], fmt: str) -> int:
    if fmt == "iso8601":
        return round(datetime.fromisoformat(doc["ts"].replace("Z", "+00:00")).timestamp() * 1000)
    assert fmt == "epoch_ms"
    return int(doc["ts"])


def state_at(factory: Factory, code: str, ts_ms: int) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for r in factory.truth.values(code):
        if r.ts_ms <= ts_ms:
            latest[r.tag] = r.value
    return latest


def devices(factory: Factory, scenario: Scenario) -> dict[str, dict[str, Any]]:
    e, s = scenario.enterprises[0], scenario.enterprises[0].sites[0]
    config = factory.gateway_config(
        e, s, "mqtt://gateway-broker:1883", None, protocols=PROTOCOLS, metrics="all"
    )
    return {d["device_id"]: d for d in config["devices"]}


async def test_documents_carry_the_true_values(mosquitto: MosquittoProcess, unique: str) -> None:
    scenario = parse_scenario(SCENARIO.format(token=unique))
    async with listening(mosquitto, f"t{unique}/#") as listener:
        async with run_factory(
            scenario,
            protocols=PROTOCOLS,
            mqtt_url=mosquitto.url,
            topic_prefix=f"t{unique}",
            speed=5,
        ) as factory:
            await asyncio.sleep(2.0)
            cutoff = factory.clock.now_ms()
            await asyncio.sleep(0.5)
            by_device = devices(factory, scenario)
        await asyncio.sleep(0.3)
        messages = listener.take()
    assert {d["broker_url"] for d in by_device.values()} == {mosquitto.url}
    seen: dict[str, int] = {}
    for topic, payload, _ in messages:
        code = topic.rsplit("/", 1)[1]
        device = by_device[code]
        assert topic == device["topic"] == f"t{unique}/E{unique}/S1/{code}"
        doc = json.loads(payload)
        ts = ts_of(doc, device["timestamp_format"])
        truth = state_at(factory, code, ts)
        shown = {f["path"]: resolve(doc, f["path"]) for f in device["fields"]}
        assert shown == {f["path"]: truth[f["path"]] for f in device["fields"]}, (code, ts)
        seen[code] = seen.get(code, 0) + 1
    assert seen["EM-1"] >= 8 and seen["STN-1"] >= 4, seen
    published = {ts_of(json.loads(p), "iso8601") for t, p, _ in messages if t.endswith("STN-1")}
    changes = {r.ts_ms for r in factory.truth.values("STN-1") if r.ts_ms <= cutoff}
    assert changes <= published  # one document per change, none lost
    parts = factory.truth.parts("STN-1")
    assert any(p.scrap for p in parts) and any(not p.scrap for p in parts)


async def test_malformed_payloads_clock_jump_and_drop(
    mosquitto: MosquittoProcess, unique: str
) -> None:
    text = SCENARIO.format(token=unique)
    boxes = text[text.index('[[enterprises.sites.equipment]]\ncode = "EM-1"') :]
    scenario = parse_scenario(text + boxes.replace("EM-1", "EM-2") + boxes.replace("EM-1", "EM-3"))
    async with (
        listening(mosquitto, f"t{unique}/+/+/+") as listener,
        run_factory(
            scenario,
            protocols=PROTOCOLS,
            mqtt_url=mosquitto.url,
            topic_prefix=f"t{unique}",
            speed=10,
        ) as factory,
    ):
        await asyncio.sleep(0.3)
        for code, kind in (("EM-1", "malformed"), ("EM-2", "clock_jump"), ("EM-3", "drop")):
            await factory.fault(code, kind, 30)  # 3 wall seconds
        await asyncio.sleep(0.2)
        listener.take()
        await asyncio.sleep(1.0)
        during = listener.take()

        async def healed() -> bool:
            return not any(m.faults.started for m in factory.machines.values())

        await until(healed)
        await asyncio.sleep(0.1)
        listener.take()
        await until(lambda: any(t.endswith("/EM-3") for t, _, _ in listener.messages))
        after = listener.take()

    def payloads(messages: list[tuple[str, bytes, bool]], code: str) -> list[bytes]:
        return [p for t, p, _ in messages if t.endswith(f"/{code}")]

    malformed = payloads(during, "EM-1")
    assert len(malformed) >= 5  # a document every simulated second
    for payload in malformed:
        try:
            doc = json.loads(payload)
        except ValueError:
            continue  # truncated, binary or empty
        power = doc.get("power") if isinstance(doc, dict) else None
        assert not isinstance(power, dict) or isinstance(power["kw"], str)  # wrong types
    stamps = [json.loads(p)["ts"] for p in payloads(during, "EM-2")]
    assert len(stamps) >= 5
    assert all(CLOCK_RESET_MS <= ts < CLOCK_RESET_MS + 3_600_000 for ts in stamps)
    assert payloads(during, "EM-3") == []  # dropped and silent
    for code in ("EM-1", "EM-2", "EM-3"):
        for payload in payloads(after, code):
            doc = json.loads(payload)
            assert doc["ts"] > factory.t0_ms and isinstance(doc["power"]["kw"], float)
    assert sorted(f.fault for f in factory.truth.faults()) == ["clock_jump", "drop", "malformed"]


async def until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result if isinstance(result, bool) else await result:
            return
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["drop", "silent"])
async def test_a_silently_dropped_station_is_offline_from_when_it_fell_silent(
    mosquitto: MosquittoProcess, unique: str, kind: str
) -> None:
    """A station that heartbeats every simulated second drops off the broker without a word
    (``drop``) or stays connected but stops publishing (``silent``), for 30 simulated seconds
    at 10x: the gateway reading it with the generated config takes it offline, stamped on the
    simulator's clock within an interval of the drop, and back online when it speaks again."""
    from plantwire_edge.config import EdgeConfig
    from plantwire_edge.gateway import Gateway
    from tests.edge.conftest import probe_on

    text = SCENARIO.format(token=unique).replace(
        "behaviour = { scrap_rate = 0.3 }", "behaviour = { publish_every_s = 1 }"
    )
    scenario = parse_scenario(text)
    e, s = scenario.enterprises[0], scenario.enterprises[0].sites[0]
    async with (
        probe_on(mosquitto.url, e.code) as probe,
        run_factory(
            scenario, protocols=PROTOCOLS, mqtt_url=mosquitto.url, topic_prefix=f"t{unique}",
            speed=10,
        ) as factory,
    ):  # fmt: skip
        config = factory.gateway_config(e, s, mosquitto.url, None, protocols=PROTOCOLS)
        station = next(d for d in config["devices"] if d["device_id"] == "STN-1")
        # three silent intervals (3 simulated seconds, 0.3 wall seconds) whatever the speed
        assert station["interval_s"] == 1.0 and "offline_after_s" not in station
        gateway = Gateway(EdgeConfig.model_validate(config), clock=factory.clock)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await probe.wait_for(lambda: len(probe.payloads("DBIRTH", "STN-1")) == 1, "birth")
            await asyncio.sleep(0.5)
            record = await factory.fault("STN-1", kind, 30)
            await probe.wait_for(lambda: len(probe.payloads("DDEATH", "STN-1")) == 1, "death")
            death = probe.payloads("DDEATH", "STN-1")[0].timestamp
            assert death is not None
            # stamped when the heartbeat after the last one it heard was due, by the station's
            # own timestamps: within a simulated second after the drop (a second before, if the
            # message the station sent as it dropped was lost), whatever the wall-clock delays
            assert record.start_ms - 1_000 < death <= record.start_ms + 1_000
            await probe.wait_for(lambda: len(probe.payloads("DBIRTH", "STN-1")) == 2, "back")
            back = probe.payloads("DBIRTH", "STN-1")[1].timestamp
            assert back is not None and back >= record.end_ms
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


async def test_a_station_clock_90_s_ahead_is_put_back_on_the_gateways_time_line(
    mosquitto: MosquittoProcess, unique: str
) -> None:
    """STN-1's clock runs 90 s ahead (``behaviour.clock_offset_s``): the timestamps it sends
    are 90 s after the true times of the ground truth. The gateway reading it at 10x on the
    simulator's clock measures the offset, publishes it (``Clock/Offset``) and takes it off:
    the execution states it publishes change when the truth says (within a simulated second),
    not 90 s later, so they line up with the station's session."""
    from plantwire_edge.config import EdgeConfig
    from plantwire_edge.gateway import Gateway
    from plantwire_edge.source_clock import OFFSET_METRIC
    from tests.edge.conftest import probe_on

    text = SCENARIO.format(token=unique).replace(
        "behaviour = { scrap_rate = 0.3 }", "behaviour = { clock_offset_s = 90 }"
    )
    scenario = parse_scenario(text)
    e, s = scenario.enterprises[0], scenario.enterprises[0].sites[0]
    async with (
        probe_on(mosquitto.url, e.code) as probe,
        run_factory(
            scenario, protocols=PROTOCOLS, mqtt_url=mosquitto.url, topic_prefix=f"t{unique}",
            speed=10,
        ) as factory,
    ):  # fmt: skip
        config = factory.gateway_config(e, s, mosquitto.url, None, protocols=PROTOCOLS)
        gateway = Gateway(EdgeConfig.model_validate(config), clock=factory.clock)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:

            def executions() -> list[tuple[int, Any]]:
                return [
                    (v.ts, v.value)
                    for v in probe.values()
                    if v.device == "STN-1" and v.metric == "State/Execution"
                ]

            await probe.wait_for(lambda: len(executions()) >= 8, "eight execution states")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
    offsets = [v.value for v in probe.values() if v.device == "STN-1" and v.metric == OFFSET_METRIC]
    assert offsets and all(89_000 <= int(o) <= 90_000 for o in offsets), offsets
    assert not any(v.metric == OFFSET_METRIC for v in probe.values() if v.device == "EM-1")
    truth = [
        (r.ts_ms, r.execution)
        for r in factory.truth.records()
        if isinstance(r, StateRecord) and r.machine == "STN-1"
    ]
    changes = [(ts, value) for ts, value in executions()[1:]]  # the birth's: the current one
    for ts, value in changes:
        # the truth changed to this state within a simulated second of the published time (the
        # nearest truth record may be another state: the station's states can be shorter)
        near = [(t - ts, v) for t, v in truth if abs(t - ts) <= 1_000]
        assert value in {v for _, v in near}, (ts, value, near)


async def test_simulated_time_waits_for_the_broker_to_take_a_station_message(
    mosquitto: MosquittoProcess, unique: str
) -> None:
    """At 600x STN-1 publishes every simulated second through a relay that holds back what the
    broker sends it (no PUBACK comes): simulated time stops a publishing interval past its
    oldest unacknowledged message, instead of running 300 simulated seconds on in the half
    wall second; let through, the clock runs on from there, slowed down, not jumping."""
    from tests.edge.conftest import HeldRelay

    text = SCENARIO.format(token=unique).replace(
        "behaviour = { scrap_rate = 0.3 }", "behaviour = { publish_every_s = 1 }"
    )
    relay = HeldRelay(mosquitto.url)
    async with (
        relay as relayed,
        run_factory(
            parse_scenario(text), protocols=PROTOCOLS, mqtt_url=relayed, topic_prefix=f"t{unique}",
            speed=600,
        ) as factory,
    ):  # fmt: skip
        deliveries = factory.deliveries
        await _until(lambda: deliveries.sent >= 20, "the stations publish")
        relay.flowing.clear()
        await asyncio.sleep(0.5)  # 300 simulated seconds, were the clock not held
        # held by a message sent after the relay stopped, or by one sent just before whose
        # PUBACK the relay kept back (under load the usual case): either is unacknowledged
        held = factory.clock.now_ms()
        limit = deliveries.limit(time.time())
        assert limit is not None and held == limit[0]
        await asyncio.sleep(0.3)
        assert factory.clock.now_ms() == held
        relay.flowing.set()
        await _until(lambda: factory.clock.now_ms() > held + 5_000, "the clock runs on")
        assert factory.clock.now_ms() < held + 60_000  # from where it was held
        assert factory.clock.slowed_s >= 0.7


async def _until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.01)
