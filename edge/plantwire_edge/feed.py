"""A configured tag, register or field bound to its device channel: conversion, mapping,
timestamp sanity, and the hand-over of each value to the node.

A device timestamp outside the sane range (see :class:`~plantwire_edge.values.ClockCheck`)
is flagged: the value is published with the gateway's time and the device's own timestamp
is kept beside it as the DateTime metric ``<metric>/DeviceTimestamp``, so both are stored.
A sane timestamp from a clock whose offset from the gateway's is beyond tolerance is corrected
by that offset, published as the device's ``Clock/Offset`` metric, so both times are known
(see :mod:`plantwire_edge.source_clock`).

Two mapped points may feed one canonical state metric when one of them ``override``s some
values: see :mod:`plantwire_edge.state_merge`.
"""

from __future__ import annotations

import logging
from typing import Any

from plantwire_bus.payload import DataType
from plantwire_edge.channel import DeviceChannel
from plantwire_edge.devices import Point
from plantwire_edge.mapping import TABLES
from plantwire_edge.source_clock import OFFSET_METRIC
from plantwire_edge.state_merge import StateMerge
from plantwire_edge.status import AdapterStatus, Throttle
from plantwire_edge.values import Rejected, converter

log = logging.getLogger(__name__)

DEVICE_TIMESTAMP_SUFFIX = "/DeviceTimestamp"


class Feed:
    """Turns native readings of one point into samples of its metric."""

    __slots__ = (
        "_companion",
        "_line",
        "_merge",
        "_throttle",
        "channel",
        "convert",
        "key",
        "label",
        "metric",
        "status",
        "table",
    )

    def __init__(
        self,
        channel: DeviceChannel,
        point: Point,
        label: str,
        status: AdapterStatus,
        throttle: Throttle,
    ) -> None:
        self.channel = channel
        self.label = label
        self.status = status
        self.metric = point.metric_name
        self.key = channel.metric(self.metric, point.published_datatype)
        self.table = TABLES[point.map] if point.map is not None else None
        self.convert = converter(point.published_datatype, self.table)
        self._companion: int | None = None
        self._throttle = throttle
        self._merge: tuple[StateMerge, int] | None = None
        # the last corrected value's (device time, time on the line, value)
        self._line: tuple[int, int, Any] = (0, 0, None)
        status.clock_speed = channel.speed
        if self.table is not None:
            peers = channel.state_feeds.setdefault(self.key, [])
            peers.append((self, point.override))
            if len(peers) > 1:  # a second point feeds this state: merge them (no value yet)
                merge = channel.merges[self.key] = StateMerge(self.key)
                for feed, override in peers:
                    feed.merge_into(merge, merge.join(override))

    def merge_into(self, merge: StateMerge, member: int) -> None:
        """From now on this point's values go through ``merge`` as its ``member``."""
        self._merge = (merge, member)

    def put(self, native: Any, ts_ms: int | None, now: int, low: int, high: int) -> None:
        """Report ``native`` read at device time ``ts_ms`` (sane if ``low <= ts_ms <= high``),
        or stamped by the gateway at ``now`` when ``ts_ms`` is None."""
        table = self.table
        value: Any
        if table is not None:
            value, known = table.translate(native)
            if not known:
                self.status.unmapped += 1
                self._throttle(
                    log,
                    f"map:{self.label}",
                    "%s: %s: value %r not in mapping table",
                    self.status.device_id,
                    self.label,
                    native,
                )
        else:
            try:
                value = self.convert(native)
            except Rejected as exc:
                self.status.rejected += 1
                self._throttle(
                    log,
                    f"reject:{self.label}",
                    "%s: %s: rejected: %s",
                    self.status.device_id,
                    self.label,
                    exc,
                )
                return
        if ts_ms is None:  # stamped by the gateway
            ts_ms = now
        elif not low <= ts_ms <= high:
            self._flag(ts_ms, now)
            ts_ms = now
        else:  # stamped by the device (even when it equals ``now``): its clock's offset from ours
            clock = self.status.observe_clock(ts_ms, now)
            correction = clock.to_publish()
            if correction is not None:
                offset = self.channel.metric(OFFSET_METRIC, DataType.Int64)
                self.channel.staged.append((offset, correction, now))
            device_ts, ts_ms = ts_ms, clock.corrected(ts_ms, now)
            # a raised correction would run this point's line back under values already
            # stamped, and a later value could take an earlier one's millisecond (a rival the
            # platform refuses): the line holds at its last value until it is passed; and
            # the last value again at its device time (a new subscription's initial value)
            # goes where it went, whatever the correction did meanwhile
            last_device_ts, last_ts, last_value = self._line
            if device_ts >= last_device_ts and (
                ts_ms < last_ts or (device_ts == last_device_ts and value == last_value)
            ):
                ts_ms = last_ts
            self._line = (device_ts, ts_ms, value)
        if self._merge is None:
            self.channel.staged.append((self.key, value, ts_ms))
        else:
            merge, member = self._merge
            merge.put(member, value, ts_ms)
        self.status.values += 1

    def _flag(self, device_ts: int, now: int) -> None:
        self.status.clock_flagged += 1
        self._throttle(
            log,
            f"clock:{self.label}",
            "%s: %s: device timestamp %d ms is not believable; published at gateway "
            "time, device time kept in %s%s",
            self.status.device_id,
            self.label,
            device_ts,
            self.metric,
            DEVICE_TIMESTAMP_SUFFIX,
        )
        if self._companion is None:
            self._companion = self.channel.metric(
                self.metric + DEVICE_TIMESTAMP_SUFFIX, DataType.DateTime
            )
        self.channel.staged.append((self._companion, min(max(device_ts, 0), 2**63 - 1), now))
