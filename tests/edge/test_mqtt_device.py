"""The MQTT device adapter against a real Mosquitto: vendor JSON mapped by selectors, device
timestamps in three formats, malformed payloads counted and never fatal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from plantwire_bus.mosquitto import MosquittoProcess, free_port
from plantwire_bus.mqtt import MqttClient, Will, parse_mqtt_url
from plantwire_edge.config import EdgeConfig, HttpConfig
from plantwire_edge.devices import MqttDevice
from plantwire_edge.mqtt_device import TimestampError, parse_timestamp
from plantwire_edge.source_clock import OFFSET_METRIC
from plantwire_sim.clock import SimClock

from .conftest import HeldRelay, http_get, probe_on, running

T0 = 1_767_225_600_000


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        (T0, "epoch_ms", T0),
        (T0 + 0.7, "epoch_ms", T0 + 1),
        (1_767_225_600.123, "epoch_s", T0 + 123),
        (1_767_225_600, "epoch_s", T0),
        ("2026-01-01T00:00:00.250Z", "iso8601", T0 + 250),
        ("2026-01-01T08:00:00+08:00", "iso8601", T0),
        ("2026-01-01T00:00:01", "iso8601", T0 + 1000),  # no zone: UTC
    ],
)
def test_parse_timestamp(raw: object, fmt: str, expected: int) -> None:
    assert parse_timestamp(raw, fmt) == expected


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("x", "epoch_ms"),
        (True, "epoch_s"),
        (T0, "iso8601"),
        ("yesterday", "iso8601"),
        (float("nan"), "epoch_ms"),
    ],
)
def test_bad_timestamps_are_refused(raw: object, fmt: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(raw, fmt)


async def test_vendor_json_mapped_and_malformed_payloads_counted(
    mqtt_url: str, group: str, unique: str
) -> None:
    topic = f"plant/{unique}/energy/+"
    cfg = EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "GW1",
            "mqtt_url": mqtt_url,
            "primary_host_id": "",
            "batch_ms": 50,
            "devices": [
                {
                    "kind": "mqtt",
                    "device_id": "EM-01",
                    "broker_url": mqtt_url,
                    "topic": topic,
                    "timestamp_path": "meta.time",
                    "timestamp_format": "iso8601",
                    "fields": [
                        {"metric": "Energy/ActivePower", "path": "power.kw", "datatype": "Double"},
                        {"metric": "Energy/Voltage/L1", "path": "phases[0].v", "datatype": "Float"},
                        {"metric": "Energy/Total", "path": "total_kwh", "datatype": "UInt32"},
                        {"metric": "x", "path": "state", "map": "mtconnect/Execution"},
                    ],
                }
            ],
        }
    )
    device = MqttClient(parse_mqtt_url(mqtt_url), f"device-{unique}")
    await device.connect()

    def doc(i: int, **extra: object) -> bytes:
        when = datetime.fromtimestamp((T0 + i * 1000) / 1000, UTC).isoformat()
        body = {
            "meta": {"time": when},
            "power": {"kw": 10.0 + i},
            "phases": [{"v": 230.0 + i}],
            "total_kwh": 1000 + i,
            "state": "ACTIVE" if i % 2 else "FEED_HOLD",
        } | extra
        return json.dumps(body).encode()

    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            base = f"plant/{unique}/energy/EM-01"
            await device.publish(base, doc(0))
            await device.publish(base, b"{not json")
            await device.publish(base, json.dumps({"unrelated": 1}).encode())
            await device.publish(base, doc(1, total_kwh=-5))  # does not fit UInt32
            await device.publish(base, doc(2, power={"kw": "high"}))  # not a number
            await device.publish(base, json.dumps([1, 2]).encode())
            await device.publish(base, doc(3))
            await probe.wait_for(
                lambda: (
                    ("Energy/Total", 1003)
                    in {(s.metric, s.value) for s in probe.values() if s.kind == "DDATA"}
                ),
                "last document",
            )
            assert adapter.status.state == "connected"  # nothing it received was fatal
    finally:
        await device.disconnect()

    seen = sorted((s.metric, s.value, s.ts) for s in probe.values() if s.kind == "DDATA")
    expected: list[tuple[str, float | str, int]] = []
    for i in (0, 1, 2, 3):
        ts = T0 + i * 1000
        if i != 2:
            expected.append(("Energy/ActivePower", 10.0 + i, ts))
        expected.append(("Energy/Voltage/L1", 230.0 + i, ts))
        if i != 1:
            expected.append(("Energy/Total", 1000 + i, ts))
        expected.append(("State/Execution", "EXECUTING" if i % 2 else "PAUSED", ts))
    assert seen == sorted(expected)
    status = adapter.status
    assert (status.malformed, status.rejected) == (3, 2)


def _liveness_config(mqtt_url: str, group: str, unique: str, **liveness: object) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "GW1",
            "mqtt_url": mqtt_url,
            "primary_host_id": "",
            "batch_ms": 50,
            "devices": [
                {
                    "kind": "mqtt",
                    "device_id": "WS-01",
                    "broker_url": mqtt_url,
                    "topic": f"plant/{unique}/ws",
                    "fields": [{"metric": "Production/GoodCount", "path": "good"}],
                    **liveness,
                }
            ],
        }
    )


async def test_a_silent_device_goes_offline_when_its_next_message_was_due(
    mqtt_url: str, group: str, unique: str
) -> None:
    """interval_s 0.4: heartbeats keep the device online; silent for three intervals, it is
    taken offline, stamped one interval after its last sign of life; data brings it back."""
    cfg = _liveness_config(
        mqtt_url, group, unique, interval_s=0.4, heartbeat_topic=f"plant/{unique}/ws/alive"
    )
    device = MqttClient(parse_mqtt_url(mqtt_url), f"device-{unique}")
    await device.connect()
    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            await device.publish(f"plant/{unique}/ws", json.dumps({"good": 1}).encode())
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "birth")
            for _ in range(6):  # 1.2 s of heartbeats only: three intervals, still online
                await asyncio.sleep(0.2)
                await device.publish(f"plant/{unique}/ws/alive", b"")
            last = adapter.clock.now_ms()
            assert probe.count("DDEATH") == 0 and adapter.channel.online
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "death after silence", 5)
            death = probe.payloads("DDEATH", "WS-01")[0]
            assert last <= death.timestamp <= last + 400 + 50  # when the next one was due
            await device.publish(f"plant/{unique}/ws", json.dumps({"good": 2}).encode())
            await probe.wait_for(lambda: probe.count("DBIRTH") == 2, "birth again")
    finally:
        await device.disconnect()


async def test_a_device_that_speaks_again_is_born_as_of_its_message(
    mqtt_url: str, group: str, unique: str
) -> None:
    """A silent device that speaks again is online as of its message's own timestamp, not as
    of when the gateway got to the message (at 600x a busy gateway's 50 wall ms are 30
    simulated seconds)."""
    cfg = _liveness_config(mqtt_url, group, unique, interval_s=0.4, timestamp_path="ts")
    device = MqttClient(parse_mqtt_url(mqtt_url), f"device-{unique}")
    await device.connect()
    topic = f"plant/{unique}/ws"
    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            await device.publish(topic, json.dumps({"good": 1, "ts": time_ms()}).encode())
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "birth")
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "death after silence", 5)
            spoke = adapter.clock.now_ms() - 300  # it spoke 300 ms before the gateway got it
            await device.publish(topic, json.dumps({"good": 2, "ts": spoke}).encode())
            await probe.wait_for(lambda: probe.count("DBIRTH") == 2, "birth again")
    finally:
        await device.disconnect()
    assert probe.payloads("DBIRTH", "WS-01")[1].timestamp == spoke


@pytest.mark.parametrize(
    ("catch_up", "interval_s"),
    [(False, 10.0), (True, 0.4)],
    ids=["replaying at 600x", "caught up with the wall clock"],
)
async def test_silence_is_looked_at_in_the_time_of_the_gateways_clock_at_its_rate_now(
    mqtt_url: str,
    group: str,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    catch_up: bool,
    interval_s: float,
) -> None:
    """On a simulation's clock at 600x that replays the past (at 600x) or has caught up with
    the wall clock (at 1x from then on), a device silent for three intervals is stamped
    offline when its next message was due, noticed within its silence timeout and a little
    wall latency, and its silence is looked at a few times, not every 5 wall ms: the check
    followed the nominal speed, 1/600 of the rate of a replay that has caught up (a demo's
    live phase), and woke the adapter some 240 times in 1.2 s."""
    now = time.time_ns() // 1_000_000
    clock = SimClock(now - (2_000 if catch_up else 3_600_000), speed=600, catch_up=catch_up)
    cfg = _liveness_config(mqtt_url, group, unique, interval_s=interval_s)
    device = MqttClient(parse_mqtt_url(mqtt_url), f"device-{unique}")
    await device.connect()
    checks = 0
    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg, clock) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            if catch_up:
                await _until(clock.live, "the replay caught up")
            rate = 1 if catch_up else 600
            look = adapter.check_silence

            def counted() -> None:
                nonlocal checks
                checks += 1
                look()

            monkeypatch.setattr(adapter, "check_silence", counted)
            await device.publish(f"plant/{unique}/ws", json.dumps({"good": 1}).encode())
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "death after silence", 10)
            noticed = clock.now_ms()
            seen = checks
    finally:
        await device.disconnect()
    spoke = next(v.ts for v in probe.values() if v.metric == "Production/GoodCount")
    death = probe.payloads("DDEATH", "WS-01")[0]
    assert death.timestamp == spoke + round(interval_s * 1000)  # when the next one was due
    silence_s = 3 * interval_s
    assert (noticed - spoke) / 1000 <= silence_s + 0.3 * rate, (noticed - spoke) / 1000
    # (at least once: the death came from a look, so the count is of the adapter's looks)
    assert 1 <= seen <= 12, f"silence looked at {seen} times in {silence_s:g} s at {rate}x"


async def test_a_lost_plant_broker_takes_the_device_offline_at_once_on_an_accelerated_clock(
    private_mosquitto: MosquittoProcess, mqtt_url: str, group: str, unique: str
) -> None:
    """The plant broker stops (its connection closed): the device is offline as of then on a
    simulation's clock at 600x, not at the adapter's next look a wall second later (600
    simulated s): the lost connection wakes it."""
    clock = SimClock(time.time_ns() // 1_000_000 - 3_600_000, speed=600)
    plant = private_mosquitto
    cfg = _liveness_config(plant.url, group, unique)  # no silence timeout: the broker alone
    cfg = cfg.model_copy(update={"mqtt_url": mqtt_url})
    device = MqttClient(parse_mqtt_url(plant.url), f"device-{unique}", reconnect=False)
    await device.connect()
    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg, clock) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            await device.publish(f"plant/{unique}/ws", json.dumps({"good": 1}).encode())
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "birth")
            stopped = clock.now_ms()
            await asyncio.to_thread(plant.stop)
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "death with the broker", 10)
    finally:
        await device.disconnect()
    death = probe.payloads("DDEATH", "WS-01")[0]
    assert death.timestamp is not None
    late_s = (death.timestamp - stopped) / 1000
    assert 0 <= late_s <= 0.2 * 600, f"offline {late_s:+.1f} simulated s after the broker stopped"


def time_ms() -> int:
    return round(time.time() * 1000)


async def test_a_gateway_behind_its_broker_does_not_take_a_publishing_device_for_silent(
    mqtt_url: str, group: str, unique: str
) -> None:
    """interval_s 0.4 (silent after 1.2 s). The device publishes every 0.1 s while what the
    broker sends the gateway is held back for 2 s: by the gateway's clock the device is silent,
    but the probe comes back behind the device's messages, so it stays online. Once it stops
    publishing, it goes offline, stamped when its next message was due."""
    device = MqttClient(parse_mqtt_url(mqtt_url), f"device-{unique}")
    await device.connect()
    relay = HeldRelay(mqtt_url)
    talking = True
    sent = 0

    async def talk() -> None:
        nonlocal sent
        while talking:
            sent += 1
            await device.publish(f"plant/{unique}/ws", json.dumps({"good": sent}).encode())
            await asyncio.sleep(0.1)

    try:
        async with relay as relayed, probe_on(mqtt_url, group) as probe:
            cfg = _liveness_config(relayed, group, unique, interval_s=0.4)
            cfg = cfg.model_copy(update={"mqtt_url": mqtt_url})
            async with running(cfg) as gateway:
                adapter = gateway.adapters[0]
                await asyncio.wait_for(adapter.connected.wait(), 10)
                talker = asyncio.create_task(talk())
                await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "birth")
                relay.flowing.clear()
                await asyncio.sleep(2.0)
                assert adapter.probes >= 1  # the timeout ran out; the probe is held back too
                relay.flowing.set()
                await probe.wait_for(lambda: adapter.status.values >= sent - 1, "caught up")
                await asyncio.sleep(0.5)
                assert probe.count("DDEATH") == 0 and adapter.channel.online
                talking = False
                await talker
                last = adapter.clock.now_ms()
                await probe.wait_for(lambda: probe.count("DDEATH") == 1, "death after silence", 5)
                death = probe.payloads("DDEATH", "WS-01")[0]
                assert last - 100 <= death.timestamp <= last + 400
    finally:
        talking = False
        await device.disconnect()


async def test_a_will_on_the_status_topic_takes_the_device_offline(
    mqtt_url: str, group: str, unique: str
) -> None:
    """The device's Will (published by the broker when its connection dies) says offline;
    without a silence timeout the death comes from the Will alone, at once."""
    status = f"plant/{unique}/ws/status"
    cfg = _liveness_config(mqtt_url, group, unique, status_topic=status)
    assert cfg.devices[0].liveness_warning() is None  # type: ignore[union-attr]
    device = MqttClient(
        parse_mqtt_url(mqtt_url), f"device-{unique}", will=Will(status, b"offline", 1, True)
    )
    await device.connect()
    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            await device.publish(status, b"online", retain=True)
            await device.publish(f"plant/{unique}/ws", json.dumps({"good": 1}).encode())
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "birth")
            await asyncio.sleep(1.5)
            assert probe.count("DDEATH") == 0  # silent, but no timeout: liveness by the Will
            device.drop_connection()  # no DISCONNECT: the broker publishes the Will
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "death by the Will", 10)
            await device.publish(status, b"garbled")
            await probe.wait_for(lambda: adapter.status.malformed == 1, "odd status counted")
    finally:
        await device.disconnect()


def test_liveness_settings_are_checked() -> None:
    base = {
        "kind": "mqtt",
        "device_id": "WS-01",
        "topic": "plant/ws",
        "fields": [{"metric": "Production/GoodCount", "path": "good"}],
    }
    adapter = TypeAdapter(MqttDevice)
    assert adapter.validate_python(base).liveness_warning() is not None
    assert adapter.validate_python(base | {"interval_s": 10}).silence_s == 30
    assert adapter.validate_python(base | {"interval_s": 10, "offline_after_s": 60}).silence_s == 60
    for bad, why in (
        ({"interval_s": 10, "offline_after_s": 5}, "must be longer than interval_s"),
        ({"status_topic": "plant/ws"}, "must differ"),
        ({"heartbeat_topic": "plant/#"}, "'#' is not allowed"),
        ({"status_topic": "s", "online_payload": "x", "offline_payload": "x"}, "must differ"),
    ):
        with pytest.raises(ValidationError, match=why):
            adapter.validate_python(base | bad)


async def test_a_device_clock_90_s_ahead_is_corrected_published_and_shown_in_metrics(
    mqtt_url: str, group: str, unique: str
) -> None:
    """A device whose clock runs 90 s ahead: its offset is measured, published as its
    ``Clock/Offset`` metric and shown in /metrics, and its values are put on the gateway's
    time line (the offset beyond tolerance is taken off their timestamps), so that they do not
    lie 90 s after the session the gateway stamps."""
    port = free_port()
    cfg = _liveness_config(mqtt_url, group, unique, interval_s=10, timestamp_path="ts")
    cfg = cfg.model_copy(update={"http": HttpConfig(listen=f"127.0.0.1:{port}")})
    device = MqttClient(parse_mqtt_url(mqtt_url), f"device-{unique}")
    await device.connect()
    sent: list[int] = []
    try:
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 10)
            for good in (1, 2):
                sent.append(round(time.time() * 1000))
                ahead = sent[-1] + 90_000
                await device.publish(
                    f"plant/{unique}/ws", json.dumps({"good": good, "ts": ahead}).encode()
                )
                await asyncio.sleep(0.2)
            await _until(lambda: adapter.status.values == 2, "both values")
            _, metrics = await http_get(port, "/metrics")
            await probe.wait_for(
                lambda: any(v.metric == "Production/GoodCount" and v.value == 2
                            for v in probe.values()), "the second value published",
            )  # fmt: skip
    finally:
        await device.disconnect()
    line = next(
        x for x in metrics.splitlines() if x.startswith("plantwire_edge_adapter_clock_offset")
    )
    assert 'device="WS-01"' in line
    assert 89.0 <= float(line.rsplit(" ", 1)[1]) <= 90.0  # less the delivery delay
    seen = probe.values()
    offsets = [v for v in seen if v.metric == OFFSET_METRIC]
    assert offsets and all(89_000 <= int(v.value or 0) <= 90_000 for v in offsets), offsets
    goods = {v.value: v.ts for v in seen if v.metric == "Production/GoodCount"}
    for good, at in zip((1, 2), sent, strict=True):  # when it was sent, not 90 s later
        assert at <= goods[good] <= at + 1_000, (good, goods[good] - at)


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.02)
