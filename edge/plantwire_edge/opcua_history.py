"""Values a server wrote while the gateway had no subscription, read back from its history.

A subscription only reports what happens while it exists. When the gateway has to create a new
one (the server restarted and forgot the old one, or the gateway was away longer than the
subscription's lifetime), the values written in between exist only in the server's history, if
it keeps one (OPC UA Part 11, HistoryRead with ReadRawModifiedDetails). This module reads them:
for each variable, everything after the last value the gateway delivered, in the order the
server returns them (oldest first). A server without history (HistoryRead unsupported, the
variable not historized) answers with an error or nothing; the gap then stays a gap, reported
by the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.client.client import Client

from plantwire_edge.opcua_publish import Reading, reading, to_ms

MAX_VALUES_PER_READ = 10_000  # per variable and call; more follow by continuation point
MAX_ROUNDS = 100  # continuation rounds per batch: a million values per variable at most

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NoHistory(RuntimeError):
    """The server refused HistoryRead altogether."""


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


async def read_since(
    client: Client,
    wanted: Sequence[tuple[int, Any, int]],
    until_ms: int,
    batch: int,
) -> list[Reading]:
    """The values of each ``(handle, node id, after_ms)`` of ``wanted`` with a source time
    after ``after_ms`` and at most ``until_ms``, oldest first per variable, as readings for
    the adapter's usual path.

    Raises :class:`NoHistory` if the server does not offer HistoryRead."""
    items: list[Reading] = []
    for start in range(0, len(wanted), max(1, batch)):
        chunk = list(wanted[start : start + batch])
        earliest = min(after for _, _, after in chunk)
        points: dict[int, bytes | None] = {handle: None for handle, _, _ in chunk}
        for _ in range(MAX_ROUNDS):
            todo = [(h, n, a) for h, n, a in chunk if h in points]
            if not todo:
                break
            results = await _read(client, todo, points, earliest, until_ms)
            for (handle, _, after), result in zip(todo, results, strict=True):
                point = result.ContinuationPoint
                if not result.StatusCode.is_good():
                    points.pop(handle)
                    continue
                values = getattr(result.HistoryData, "DataValues", None) or []
                for dv in values:
                    stamp = dv.SourceTimestamp
                    if stamp is not None and after < to_ms(stamp) <= until_ms:
                        items.append(reading(handle, dv))
                if point:
                    points[handle] = point
                else:
                    points.pop(handle)
    return items


async def _read(
    client: Client,
    todo: list[tuple[int, Any, int]],
    points: dict[int, bytes | None],
    after_ms: int,
    until_ms: int,
) -> list[Any]:
    details = ua.ReadRawModifiedDetails()
    details.IsReadModified = False
    details.StartTime = from_ms(after_ms)  # inclusive: the value at after_ms is filtered out
    details.EndTime = from_ms(until_ms)
    details.NumValuesPerNode = MAX_VALUES_PER_READ
    details.ReturnBounds = False
    params = ua.HistoryReadParameters()
    params.HistoryReadDetails = details
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    params.ReleaseContinuationPoints = False
    for handle, nodeid, _ in todo:
        value_id = ua.HistoryReadValueId()
        value_id.NodeId = nodeid
        value_id.ContinuationPoint = points.get(handle)
        params.NodesToRead.append(value_id)
    try:
        results: list[Any] = await client.uaclient.history_read(params)
    except ua.uaerrors.UaStatusCodeError as exc:
        raise NoHistory(str(exc)) from exc
    if len(results) != len(todo):
        raise NoHistory(f"{len(results)} results for {len(todo)} variables")
    return results
