"""The gateway's decoder of Publish responses against asyncua's own decoder, on the bytes a
real asyncua server sent, and against what the server was made to write; plus DataValues
with picoseconds laid out by hand as the specification orders them, and broken responses."""

from __future__ import annotations

import asyncio
import struct
import time
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.utils import Buffer
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import struct_from_binary

from plantwire_edge.opcua_publish import (
    Readings,
    Recording,
    data_change_readings,
    publish_response,
    readings_of,
)

from .conftest import ms_to_dt, ua_server

V = ua.VariantType
BAD_SENSOR = StatusCodes.BadSensorFailure
VARIABLES: dict[str, tuple[ua.VariantType, Any]] = {
    "D": (V.Double, 0.0),
    "F": (V.Float, 0.0),
    "I": (V.Int32, 0),
    "U16": (V.UInt16, 0),
    "I64": (V.Int64, 0),
    "B": (V.Boolean, False),
    "S": (V.String, ""),
    "T": (V.DateTime, datetime(2000, 1, 1, tzinfo=UTC)),
    "A": (V.Int32, [0, 0]),
    "Bad": (V.Double, 0.0),
}


def request(handle: int, nodeid: Any) -> ua.MonitoredItemCreateRequest:
    parameters = ua.MonitoringParameters()
    parameters.ClientHandle = handle
    parameters.QueueSize = 10
    parameters.SamplingInterval = 0.0
    item = ua.ReadValueId()
    item.NodeId = nodeid
    item.AttributeId = AttributeIds.Value
    created = ua.MonitoredItemCreateRequest()
    created.ItemToMonitor = item
    created.MonitoringMode = ua.MonitoringMode.Reporting
    created.RequestedParameters = parameters
    return created


def values(tick: int) -> dict[str, Any]:
    return {
        "D": tick + 0.125,
        "F": tick + 0.5,
        "I": -tick,
        "U16": tick,
        "I64": 2**40 + tick,
        "B": tick % 2 == 1,
        "S": f"Zählerstand {tick}",
        "T": datetime(2026, 1, 1, 0, 0, tick, 250_000, tzinfo=UTC),
        "A": [tick, -tick, 7],
    }


async def test_readings_equal_asyncuas_decoding_of_real_responses() -> None:
    async with ua_server(VARIABLES) as srv:
        client = Client(srv.endpoint)
        session = Recording(client.uaclient)
        client.uaclient.session = session
        async with client:
            sub = await client.create_subscription(50, None)
            names = list(VARIABLES)  # client handle: the index + 1
            await sub.create_monitored_items(
                [request(i + 1, srv.nodes[name].nodeid) for i, name in enumerate(names)]
            )
            await asyncio.sleep(0.3)
            truth: dict[tuple[int, int], Any] = {}  # (handle, source ms) -> value written
            # a bad value, once (the server keeps it without its value: a second one with
            # the same status is no change)
            ts = time.time_ns() // 1_000_000
            when = cast(ua.DateTime, ms_to_dt(ts))
            bad = ua.DataValue(
                ua.Variant(1.0, V.Double),
                StatusCode=ua.StatusCode(ua.UInt32(BAD_SENSOR)),
                SourceTimestamp=when,
                ServerTimestamp=when,
            )
            await srv.server.write_attribute_value(srv.nodes["Bad"].nodeid, bad)
            truth[(len(names), ts)] = None  # sent with its status only
            for tick in range(1, 6):
                for name, value in values(tick).items():
                    ts = await srv.write(name, value)
                    truth[(names.index(name) + 1, ts)] = value
                await asyncio.sleep(0.12)
            await asyncio.sleep(0.3)
    assert session.raw
    decoded: list[Any] = []
    for raw in session.raw:
        theirs = struct_from_binary(ua.PublishResponse, Buffer(raw))
        ours = publish_response(Buffer(raw))
        their_data = theirs.Parameters.NotificationMessage.NotificationData
        our_data = ours.Parameters.NotificationMessage.NotificationData
        assert len(our_data) == len(their_data)
        for mine, their in zip(our_data, their_data, strict=True):
            if isinstance(mine, Readings):
                assert isinstance(their, ua.DataChangeNotification)
                assert mine.items == readings_of(their.MonitoredItems)
                assert mine.diagnostics == their.DiagnosticInfos
                decoded.extend(mine.items)
            else:
                assert mine == their
        theirs.Parameters.NotificationMessage.NotificationData = []
        ours.Parameters.NotificationMessage.NotificationData = []
        assert ours == theirs  # headers, sequence numbers, acknowledgement results
    # and against what the server wrote: every value, with its source time in ms
    got = {(handle, source): (value, status) for handle, value, status, source, _ in decoded}
    for (handle, ts), value in truth.items():
        status = BAD_SENSOR if handle == len(VARIABLES) else 0
        assert got[(handle, ts)] == (value, status), (handle, ts)
    assert all(server is not None for *_, server in decoded)


def test_picoseconds_in_the_order_of_the_specification() -> None:
    """Part 6, 5.2.2.17: Value, Status, SourceTimestamp, SourcePicoseconds, ServerTimestamp,
    ServerPicoseconds."""
    source_ms, server_ms = 1_765_000_000_123, 1_765_000_000_456
    ticks = [116_444_736_000_000_000 + ms * 10_000 + 4_321 for ms in (source_ms, server_ms)]
    item = (
        struct.pack("<IB", 7, 0x3F)
        + bytes([V.Double.value])
        + struct.pack("<d", 2.5)
        + struct.pack("<I", 0x40920000)  # an uncertain status
        + struct.pack("<qH", ticks[0], 1234)
        + struct.pack("<qH", ticks[1], 5678)
    )
    body = struct.pack("<i", 2) + item + item + struct.pack("<i", -1)
    readings, end = data_change_readings(body, 0, len(body))
    assert end == len(body)
    assert readings.items == [(7, 2.5, 0x40920000, source_ms, server_ms)] * 2


def test_a_broken_notification_is_an_error_not_a_guess() -> None:
    item = struct.pack("<IB", 1, 0x01) + bytes([V.Double.value]) + struct.pack("<d", 1.0)
    body = struct.pack("<i", 1) + item + struct.pack("<i", 0)
    assert data_change_readings(body, 0, len(body))[0].items == [(1, 1.0, 0, None, None)]
    with pytest.raises(struct.error):  # cut in the middle of the value
        data_change_readings(body[:10], 0, 10)
    with pytest.raises(ValueError, match="beyond"):  # longer than the object says it is
        data_change_readings(body, 0, 10)
