"""The MQTT device adapter against a real Mosquitto: vendor JSON mapped by selectors, device
timestamps in three formats, malformed payloads counted and never fatal."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_edge.config import EdgeConfig
from plantwire_edge.mqtt_device import TimestampError, parse_timestamp

from .conftest import probe_on, running

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
