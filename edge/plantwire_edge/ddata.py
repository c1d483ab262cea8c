"""DDATA payloads from buffered samples, written straight into the Sparkplug B protobuf.

The general codec (:mod:`plantwire_bus.payload`) validates every metric through a frozen
dataclass; the gateway's samples are already converted and range-checked by the adapters
(:mod:`plantwire_edge.values`), so this encoder only places each value in the field its
datatype calls for. Data messages carry aliases and per-metric timestamps, no names or
datatypes, as the specification recommends. The second and later values of a metric within one
millisecond carry their ordinal as the metric property ``plantwire.ordinal``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from plantwire_bus.extension import ORDINAL
from plantwire_bus.payload import DataType
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_edge.values import INT_RANGES, TEXT

Field = tuple[str, Callable[[Any], Any] | None]
Sample = tuple[int, Any, int] | tuple[int, Any, int, int]  # as in the buffer
_UINT32 = int(DataType.UInt32)


def _twos(bits: int) -> Callable[[int], int]:
    full = 1 << bits

    def wrap(number: int) -> int:
        return number + full if number < 0 else number

    return wrap


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_LONG = (DataType.Int64, DataType.UInt64, DataType.DateTime)


def field_for(datatype: DataType) -> Field:
    """The protobuf value field of ``datatype`` and the transform its value needs."""
    if datatype in INT_RANGES:
        name = "long_value" if datatype in _LONG else "int_value"
        bits = _SIGNED_BITS.get(datatype)
        return name, _twos(bits) if bits is not None else None
    if datatype is DataType.Double:
        return "double_value", None
    if datatype is DataType.Float:
        return "float_value", None
    if datatype is DataType.Boolean:
        return "boolean_value", None
    if datatype in TEXT:
        return "string_value", None
    raise ValueError(f"datatype {datatype.name} cannot be published")


def encode_ddata(
    samples: Iterable[Sample],
    fields: dict[int, Field],
    *,
    seq: int,
    timestamp: int,
    historical: bool,
) -> tuple[bytes, int]:
    """A DDATA payload of ``samples`` (alias, value, ts_ms[, ordinal]); returns it and the
    metric count."""
    payload = PbPayload(timestamp=timestamp, seq=seq)
    add = payload.metrics.add
    count = 0
    for sample in samples:
        alias, value = sample[0], sample[1]
        metric = add()
        metric.alias = alias
        metric.timestamp = sample[2]
        if len(sample) == 4:  # the n-th value within this millisecond
            metric.properties.keys.append(ORDINAL)
            prop = metric.properties.values.add()
            prop.type = _UINT32
            prop.int_value = sample[3]
        if historical:
            metric.is_historical = True
        if value is None:
            metric.is_null = True
        else:
            name, transform = fields[alias]
            setattr(metric, name, value if transform is None else transform(value))
        count += 1
    return payload.SerializeToString(), count


def encode_valid(
    samples: list[Sample],
    fields: dict[int, Field],
    *,
    seq: int,
    timestamp: int,
    historical: bool,
) -> tuple[bytes, int, int]:
    """Like :func:`encode_ddata`, leaving out samples whose value does not fit its field;
    returns the payload, the metric count and the number left out."""
    good = []
    for sample in samples:
        try:
            encode_ddata([sample], fields, seq=0, timestamp=0, historical=False)
        except (TypeError, ValueError):
            continue
        good.append(sample)
    data, count = encode_ddata(good, fields, seq=seq, timestamp=timestamp, historical=historical)
    return data, count, len(samples) - len(good)
