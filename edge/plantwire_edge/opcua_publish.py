"""Publish responses decoded for the gateway: each data change as a plain reading.

asyncua decodes a Publish response field by field into its dataclasses (a Variant, a
DataValue, two datetimes and a StatusCode per value), which at 100 variables every 100 ms
cost about as much CPU as everything the gateway does with the values. The gateway needs
five things of each monitored item: its client handle, the value, the status code and the
two timestamps as milliseconds since the epoch. :class:`PublishSession` is asyncua's session
with only its Publish call's decoding replaced: the DataChangeNotifications of a response
become :class:`Readings` (a list of :data:`Reading` tuples), read straight from the bytes;
everything else in the response (the headers, status change notifications, a value of a type
this module does not read itself: arrays, structures, node ids...) is decoded by asyncua as
before.

DataValues are read in the order of the specification (OPC UA Part 6, 5.2.2.17: source
picoseconds before the server timestamp), which asyncua 2.1's generic decoder does not
follow; the two agree on every DataValue without picoseconds.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.client.ua_session import UaSession
from asyncua.common.shortcuts import Shortcuts
from asyncua.common.utils import Buffer
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import (
    extensionobject_from_binary,
    from_binary,
    get_string_encoding,
    nodeid_from_binary,
    struct_from_binary,
    variant_from_binary,
)
from asyncua.ua.uaerrors import UaStructParsingError

# (client handle, value, status code, source time ms, server time ms); a time is None when
# the server did not send it
Reading = tuple[int, Any, int, int | None, int | None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DATA_CHANGE = ObjectIds.DataChangeNotification_Encoding_DefaultBinary
_FILETIME_1970 = 116_444_736_000_000_000  # 100 ns ticks from 1601 to 1970
_HANDLE_MASK = struct.Struct("<IB").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_I64 = struct.Struct("<q").unpack_from
_STAMPS = struct.Struct("<qq").unpack_from
_BOOL_U32 = struct.Struct("<?I").unpack_from
# built-in scalar types read here (variant encoding byte = type id, no array bits)
_SCALARS: dict[int, tuple[Any, int]] = {
    ua.VariantType.Boolean.value: (struct.Struct("<?").unpack_from, 1),
    ua.VariantType.SByte.value: (struct.Struct("<b").unpack_from, 1),
    ua.VariantType.Byte.value: (struct.Struct("<B").unpack_from, 1),
    ua.VariantType.Int16.value: (struct.Struct("<h").unpack_from, 2),
    ua.VariantType.UInt16.value: (struct.Struct("<H").unpack_from, 2),
    ua.VariantType.Int32.value: (struct.Struct("<i").unpack_from, 4),
    ua.VariantType.UInt32.value: (struct.Struct("<I").unpack_from, 4),
    ua.VariantType.Int64.value: (struct.Struct("<q").unpack_from, 8),
    ua.VariantType.UInt64.value: (struct.Struct("<Q").unpack_from, 8),
    ua.VariantType.Float.value: (struct.Struct("<f").unpack_from, 4),
    ua.VariantType.Double.value: (struct.Struct("<d").unpack_from, 8),
}
_NULL = ua.VariantType.Null.value
_STRING = ua.VariantType.String.value


def to_ms(ts: datetime) -> int:
    """Whole milliseconds since the epoch, computed exactly (no float rounding)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _MS


def filetime_ms(ticks: int) -> int:
    """An OPC UA DateTime (100 ns ticks since 1601) as milliseconds since 1970, clamped to
    1601-9999 as asyncua clamps its datetimes."""
    if 0 <= ticks < ua.uatypes.MAX_OPC_FILETIME:
        return (ticks - _FILETIME_1970) // 10_000
    return to_ms(ua.win_epoch_to_datetime(ticks))


@dataclass(slots=True)
class Readings:
    """A DataChangeNotification whose monitored items are readings."""

    items: list[Reading]
    diagnostics: list[Any] = field(default_factory=list)


def reading(handle: int, dv: Any) -> Reading:
    """The reading of an asyncua DataValue (polled, read from history or republished)."""
    variant = dv.Value
    status = dv.StatusCode
    source, server = dv.SourceTimestamp, dv.ServerTimestamp
    return (
        handle,
        variant.Value if variant is not None else None,
        status.value if status is not None else 0,
        None if source is None else to_ms(source),
        None if server is None else to_ms(server),
    )


def readings_of(items: Iterable[Any]) -> list[Reading]:
    """The readings of asyncua MonitoredItemNotifications."""
    return [reading(item.ClientHandle, item.Value) for item in items]


def _value(raw: bytes, pos: int) -> tuple[Any, int]:
    """A Variant's value and the position after it."""
    vtype = raw[pos]
    scalar = _SCALARS.get(vtype)
    if scalar is not None:
        return scalar[0](raw, pos + 1)[0], pos + 1 + scalar[1]
    if vtype == _STRING:
        (length,) = _I32(raw, pos + 1)
        start = pos + 5
        if length < 0:
            return None, start
        if start + length > len(raw):
            raise ValueError("string beyond the end of the message")
        text = bytes(raw[start : start + length]).decode(
            get_string_encoding(), errors="surrogateescape"
        )
        return text, start + length
    if vtype == _NULL:
        return None, pos + 1
    buf = Buffer(raw, pos)  # arrays, structures, date times...: asyncua's own decoder
    value = variant_from_binary(buf).Value
    return value, buf.cur_pos


def data_change_readings(raw: bytes, pos: int, end: int) -> tuple[Readings, int]:
    """The DataChangeNotification body in ``raw[pos:end]`` as readings."""
    (count,) = _I32(raw, pos)
    pos += 4
    items: list[Reading] = []
    append = items.append
    scalars, stamps = _SCALARS, _STAMPS
    low, high, epoch = 0, ua.uatypes.MAX_OPC_FILETIME, _FILETIME_1970
    for _ in range(max(0, count)):
        handle, mask = _HANDLE_MASK(raw, pos)
        pos += 5
        value = None
        if mask & 0x01:
            scalar = scalars.get(raw[pos])
            if scalar is not None:
                value = scalar[0](raw, pos + 1)[0]
                pos += 1 + scalar[1]
            else:
                value, pos = _value(raw, pos)
        status = 0
        if mask & 0x02:
            (status,) = _U32(raw, pos)
            pos += 4
        if mask & 0x3C == 0x0C:  # both timestamps, no picoseconds: the usual case
            source, server = stamps(raw, pos)
            pos += 16
            source = (source - epoch) // 10_000 if low <= source < high else filetime_ms(source)
            server = (server - epoch) // 10_000 if low <= server < high else filetime_ms(server)
        else:
            source = server = None
            if mask & 0x04:
                source = filetime_ms(_I64(raw, pos)[0])
                pos += 8
            if mask & 0x10:  # source picoseconds
                pos += 2
            if mask & 0x08:
                server = filetime_ms(_I64(raw, pos)[0])
                pos += 8
            if mask & 0x20:  # server picoseconds
                pos += 2
        append((handle, value, status, source, server))
    if pos > end:
        raise ValueError(f"DataChangeNotification read {pos - end} bytes beyond its length")
    buf = Buffer(raw, pos, end - pos)
    diagnostics = from_binary(list[ua.DiagnosticInfo], buf)
    if buf.cur_pos != end:
        raise ValueError(f"DataChangeNotification of {end - pos} bytes read as {buf.cur_pos - pos}")
    return Readings(items, diagnostics or []), end


def _notification(raw: bytes, pos: int) -> tuple[Any, int]:
    """One ExtensionObject of a NotificationMessage and the position after it."""
    buf = Buffer(raw, pos)
    typeid = nodeid_from_binary(buf)
    if typeid.NamespaceIndex == 0 and typeid.Identifier == _DATA_CHANGE:
        encoding = raw[buf.cur_pos]
        (length,) = _I32(raw, buf.cur_pos + 1)
        start = buf.cur_pos + 5
        if encoding == 1 and length > 0 and start + length <= len(raw):
            return data_change_readings(raw, start, start + length)
    buf.rewind(pos)
    return extensionobject_from_binary(buf), buf.cur_pos


def publish_response(data: Buffer) -> ua.PublishResponse:
    """A Publish response (from its TypeId on), its data changes as :class:`Readings`."""
    raw = data.read(len(data))
    buf = Buffer(raw)
    typeid = nodeid_from_binary(buf)
    header = struct_from_binary(ua.ResponseHeader, buf)
    pos = buf.cur_pos
    (subscription_id,) = _U32(raw, pos)
    buf.skip(4)
    available = from_binary(list[ua.UInt32], buf)
    pos = buf.cur_pos
    more, sequence_number = _BOOL_U32(raw, pos)
    buf.skip(5)
    published_at = from_binary(ua.DateTime, buf)
    (count,) = _I32(raw, buf.cur_pos)
    pos = buf.cur_pos + 4
    notifications: list[Any] = []
    for _ in range(max(0, count)):
        notification, pos = _notification(raw, pos)
        notifications.append(notification)
    buf = Buffer(raw, pos)
    results = from_binary(list[ua.StatusCode], buf)
    diagnostics = from_binary(list[ua.DiagnosticInfo], buf)
    if len(buf):
        raise ValueError(f"{len(buf)} bytes left after the Publish response")
    message = ua.NotificationMessage(
        SequenceNumber=sequence_number, PublishTime=published_at, NotificationData=notifications
    )
    result = ua.PublishResult(
        SubscriptionId=subscription_id,
        AvailableSequenceNumbers=available,
        MoreNotifications=more,
        NotificationMessage=message,
        Results=results,
        DiagnosticInfos=diagnostics,
    )
    return ua.PublishResponse(TypeId=typeid, ResponseHeader=header, Parameters=result)


class PublishSession(UaSession):
    """asyncua's session, its Publish responses decoded by :func:`publish_response`."""

    async def publish(self, acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await self._send_request(request, timeout=0)
        try:
            return publish_response(data)
        except Exception as exc:  # asyncua's loop goes on without acknowledging it
            self.logger.exception("Error parsing notification from server")
            raise UaStructParsingError from exc


class Recording(UaSession):
    """asyncua's own session, keeping the bytes of every Publish response (to compare
    decoders on what a server really sent: tests and ``bench/opcua_decode.py``)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.raw: list[bytes] = []

    async def _send_request(self, request: Any, timeout: float | None = None, *a: Any) -> Any:
        data = await super()._send_request(request, timeout, *a)
        if isinstance(request, ua.PublishRequest):
            copy = data.copy()
            self.raw.append(bytes(copy.read(len(copy))))
        return data


def install(client: Client) -> None:
    """Give a client that is not connected yet a :class:`PublishSession`."""
    session = PublishSession(client.uaclient)
    client.uaclient.session = session
    client.nodes = Shortcuts(session)
