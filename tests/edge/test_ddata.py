"""The gateway's DDATA encoder, decoded by the project codec and by pysparkplug (an
independent Sparkplug B implementation)."""

from __future__ import annotations

from datetime import datetime

import pysparkplug as sp
import pytest

from plantwire_bus.payload import DataType, Metric, Payload, coerce, decode_payload, encode_payload
from plantwire_edge.ddata import encode_ddata, field_for

CASES: list[tuple[int, DataType, int | float | bool | str | None]] = [
    (1, DataType.Int8, -5),
    (2, DataType.Int16, -32768),
    (3, DataType.Int32, -2_000_000_000),
    (4, DataType.Int64, -(2**40)),
    (5, DataType.UInt8, 255),
    (6, DataType.UInt16, 65535),
    (7, DataType.UInt32, 4_000_000_000),
    (8, DataType.UInt64, 2**63 + 5),
    (9, DataType.Float, 1.5),
    (10, DataType.Double, -1234.5678),
    (11, DataType.Boolean, True),
    (12, DataType.String, "EXECUTING"),
    (13, DataType.DateTime, 1_767_225_600_123),
    (14, DataType.Double, None),
]
T0 = 1_767_225_600_000


def encoded(historical: bool) -> bytes:
    fields = {alias: field_for(dt) for alias, dt, _ in CASES}
    samples = [(alias, value, T0 + alias) for alias, _, value in CASES]
    data, count = encode_ddata(samples, fields, seq=7, timestamp=T0, historical=historical)
    assert count == len(CASES)
    return data


@pytest.mark.parametrize("historical", [False, True])
def test_project_codec_reads_every_datatype(historical: bool) -> None:
    payload = decode_payload(encoded(historical))
    assert (payload.seq, payload.timestamp) == (7, T0)
    for (alias, datatype, value), metric in zip(CASES, payload.metrics, strict=True):
        assert metric.alias == alias and metric.name is None and metric.datatype is None
        assert metric.timestamp == T0 + alias
        assert metric.is_historical is historical
        assert metric.is_null is (value is None)
        assert coerce(metric.value, datatype) == value


def test_pysparkplug_reads_it_against_a_birth() -> None:
    birth = Payload(
        timestamp=T0,
        seq=1,
        metrics=tuple(
            Metric(
                name=f"m{alias}",
                alias=alias,
                timestamp=T0,
                datatype=dt,
                value=value,
                is_null=value is None,
            )
            for alias, dt, value in CASES
        ),
    )
    dbirth = sp.DBirth.decode(encode_payload(birth))
    ddata = sp.DData.decode(encoded(historical=True), birth=dbirth)
    assert ddata.seq == 7
    by_name = {m.name: m for m in ddata.metrics}
    for alias, dt, value in CASES:
        metric = by_name[f"m{alias}"]
        assert metric.timestamp == T0 + alias
        assert metric.is_historical
        if dt is DataType.Float:
            assert metric.value == pytest.approx(value)
        elif dt is DataType.DateTime:
            assert isinstance(metric.value, datetime)
            assert int(metric.value.timestamp() * 1000) == value
        else:
            assert metric.value == value, dt


def test_unpublishable_datatypes_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be published"):
        field_for(DataType.DataSet)
