"""Sparkplug B payload codec: round trips, wire placement, rejection and fuzzing."""

import contextlib
import math
import random
import struct
from dataclasses import replace

import pytest

from plantwire_bus import sparkplug_b_pb2 as pb
from plantwire_bus.payload import (
    MAX_ORDINAL,
    ORDINAL,
    DataType,
    Metric,
    MetricValue,
    Payload,
    PayloadError,
    coerce,
    decode_payload,
    encode_payload,
    next_seq,
)

TS = 1_700_000_000_123


def _f32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def _one(metric: Metric, **kwargs: bool) -> Metric:
    """Encode ``metric`` in a payload, decode it and return the decoded metric."""
    data = encode_payload(Payload(timestamp=TS, seq=0, metrics=(metric,)), **kwargs)
    (decoded,) = decode_payload(data).metrics
    return decoded


def _raw(metric: pb.Payload.Metric) -> bytes:
    payload = pb.Payload(timestamp=TS)
    payload.metrics.append(metric)
    return payload.SerializeToString()


SCALARS: list[tuple[DataType, MetricValue]] = [
    (DataType.Int8, -128),
    (DataType.Int8, -1),
    (DataType.Int8, 0),
    (DataType.Int8, 127),
    (DataType.Int16, -32768),
    (DataType.Int16, 32767),
    (DataType.Int32, -(2**31)),
    (DataType.Int32, -1),
    (DataType.Int32, 2**31 - 1),
    (DataType.Int64, -(2**63)),
    (DataType.Int64, -1),
    (DataType.Int64, 2**63 - 1),
    (DataType.UInt8, 0),
    (DataType.UInt8, 255),
    (DataType.UInt16, 65535),
    (DataType.UInt32, 0),
    (DataType.UInt32, 2**32 - 1),
    (DataType.UInt64, 2**64 - 1),
    (DataType.Float, 1.5),
    (DataType.Float, -0.0),
    (DataType.Float, math.inf),
    (DataType.Float, -math.inf),
    (DataType.Double, 0.1),
    (DataType.Double, -1.7976931348623157e308),
    (DataType.Double, 5e-324),
    (DataType.Boolean, True),
    (DataType.Boolean, False),
    (DataType.String, ""),
    (DataType.String, "Fräse 3 – Spindel 🛠 主轴"),
    (DataType.Text, "line 1\nline 2\x00end" * 100),
    (DataType.UUID, "0f8fad5b-d9cb-469f-a165-70867728950e"),
    (DataType.DateTime, 0),
    (DataType.DateTime, TS),
    (DataType.DateTime, 2**64 - 1),
    (DataType.Bytes, b""),
    (DataType.Bytes, bytes(range(256))),
    (DataType.File, b"%PDF-1.7\x00\xff"),
]


@pytest.mark.parametrize(("datatype", "value"), SCALARS)
def test_scalar_round_trip(datatype: DataType, value: MetricValue) -> None:
    metric = Metric(name="m", alias=1, timestamp=TS, datatype=datatype, value=value)
    decoded = _one(metric)
    assert decoded == metric
    assert type(decoded.value) is type(value)
    assert decoded.datatype is datatype


@pytest.mark.parametrize(("datatype", "value"), SCALARS)
def test_alias_only_value_is_raw_until_coerced(datatype: DataType, value: MetricValue) -> None:
    metric = Metric(alias=9, timestamp=TS, datatype=datatype, value=value)
    decoded = _one(metric, omit_datatypes=True)
    assert decoded.datatype is None
    assert decoded.name is None
    assert decoded.alias == 9
    assert coerce(decoded.value, datatype) == value
    assert coerce(coerce(decoded.value, datatype), datatype) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, _f32(0.1)), (1 / 3, _f32(1 / 3)), (16777217.0, 16777216.0), (3, 3.0)],
)
def test_float_is_rounded_to_float32(value: float, expected: float) -> None:
    decoded = _one(Metric(name="f", datatype=DataType.Float, value=value))
    assert decoded.value == expected
    assert isinstance(decoded.value, float)


@pytest.mark.parametrize("datatype", [DataType.Float, DataType.Double])
def test_nan_round_trip(datatype: DataType) -> None:
    decoded = _one(Metric(name="x", datatype=datatype, value=math.nan))
    assert isinstance(decoded.value, float)
    assert math.isnan(decoded.value)


@pytest.mark.parametrize(
    ("datatype", "value", "field", "wire"),
    [
        (DataType.Int8, -1, "int_value", 0xFF),
        (DataType.Int8, -128, "int_value", 0x80),
        (DataType.Int16, -1, "int_value", 0xFFFF),
        (DataType.Int32, -1, "int_value", 0xFFFFFFFF),
        (DataType.Int32, 5, "int_value", 5),
        (DataType.UInt8, 200, "int_value", 200),
        (DataType.UInt16, 60000, "int_value", 60000),
        (DataType.UInt32, 2**32 - 1, "int_value", 2**32 - 1),
        (DataType.Int64, -1, "long_value", 2**64 - 1),
        (DataType.Int64, 5, "long_value", 5),
        (DataType.UInt64, 5, "long_value", 5),
        (DataType.DateTime, TS, "long_value", TS),
        (DataType.Float, 0.5, "float_value", 0.5),
        (DataType.Double, 0.5, "double_value", 0.5),
        (DataType.Boolean, True, "boolean_value", True),
        (DataType.String, "s", "string_value", "s"),
        (DataType.Text, "t", "string_value", "t"),
        (DataType.UUID, "u", "string_value", "u"),
        (DataType.Bytes, b"b", "bytes_value", b"b"),
        (DataType.File, b"f", "bytes_value", b"f"),
    ],
)
def test_wire_placement(datatype: DataType, value: MetricValue, field: str, wire: object) -> None:
    data = encode_payload(Payload(metrics=(Metric(name="m", datatype=datatype, value=value),)))
    (metric,) = pb.Payload.FromString(data).metrics
    assert metric.WhichOneof("value") == field
    assert getattr(metric, field) == wire
    assert metric.datatype == datatype


def test_omit_datatypes_keeps_placement() -> None:
    metric = Metric(alias=3, datatype=DataType.Int64, value=7)
    data = encode_payload(Payload(metrics=(metric,)), omit_datatypes=True)
    (raw,) = pb.Payload.FromString(data).metrics
    assert not raw.HasField("datatype")
    assert raw.WhichOneof("value") == "long_value"


@pytest.mark.parametrize(
    ("datatype", "field", "wire", "expected"),
    [
        # sign-extended forms written by C/Java producers
        (DataType.Int8, "int_value", 0xFFFFFFFF, -1),
        (DataType.Int8, "int_value", 0xFFFFFF80, -128),
        (DataType.Int16, "int_value", 0xFFFF8000, -32768),
        (DataType.Int8, "long_value", 2**64 - 1, -1),
        (DataType.Int32, "long_value", 2**64 - 2**31, -(2**31)),
        # integer types accept either integer field
        (DataType.UInt32, "long_value", 2**32 - 1, 2**32 - 1),
        (DataType.Int64, "int_value", 0xFFFFFFFF, 0xFFFFFFFF),
        (DataType.UInt64, "int_value", 7, 7),
        # float types accept either float field
        (DataType.Double, "float_value", 0.5, 0.5),
        (DataType.Float, "double_value", 0.25, 0.25),
    ],
)
def test_decode_accepts_other_producers_forms(
    datatype: DataType, field: str, wire: object, expected: MetricValue
) -> None:
    metric = pb.Payload.Metric(name="m", datatype=datatype)
    setattr(metric, field, wire)
    (decoded,) = decode_payload(_raw(metric)).metrics
    assert decoded.value == expected


@pytest.mark.parametrize(
    "metric",
    [
        Metric(
            name="h", timestamp=TS - 60_000, datatype=DataType.Double, value=1.0, is_historical=True
        ),
        Metric(name="t", datatype=DataType.Int32, value=1, is_transient=True),
        Metric(name="n", datatype=DataType.Int32, is_null=True),
        Metric(name="n", alias=4, datatype=DataType.String, is_null=True, is_historical=True),
        Metric(alias=4, is_null=True),
        Metric(alias=0, timestamp=0, datatype=DataType.UInt8, value=0),
        Metric(name="bdSeq", datatype=DataType.UInt64, value=3),
    ],
)
def test_flags_and_optional_fields_round_trip(metric: Metric) -> None:
    assert _one(metric) == metric


def test_null_metric_with_value_on_wire_decodes_to_none() -> None:
    metric = pb.Payload.Metric(name="n", datatype=DataType.Int32, is_null=True, int_value=5)
    (decoded,) = decode_payload(_raw(metric)).metrics
    assert decoded.is_null
    assert decoded.value is None


def test_payload_fields_round_trip() -> None:
    metrics = tuple(
        Metric(alias=i, timestamp=TS + i, datatype=DataType.Double, value=i / 7) for i in range(50)
    )
    payload = Payload(timestamp=TS, seq=255, metrics=metrics, uuid="a2c5-…", body=b"\x00raw\xff")
    assert decode_payload(encode_payload(payload)) == payload


@pytest.mark.parametrize(
    "payload",
    [Payload(), Payload(timestamp=0), Payload(seq=0), Payload(uuid=""), Payload(body=b"")],
)
def test_sparse_payloads_round_trip(payload: Payload) -> None:
    assert decode_payload(encode_payload(payload)) == payload


def test_empty_bytes_is_an_empty_payload() -> None:
    assert decode_payload(b"") == Payload()


def test_ddata_with_several_timestamps() -> None:
    metrics = (
        Metric(alias=1, timestamp=TS, datatype=DataType.Int16, value=-5),
        Metric(alias=1, timestamp=TS + 10, datatype=DataType.Int16, value=-6),
        Metric(
            alias=2, timestamp=TS - 5000, datatype=DataType.Boolean, value=True, is_historical=True
        ),
    )
    payload = Payload(timestamp=TS + 20, seq=17, metrics=metrics)
    decoded = decode_payload(encode_payload(payload, omit_datatypes=True))
    assert [(m.alias, m.timestamp, m.is_historical) for m in decoded.metrics] == [
        (1, TS, False),
        (1, TS + 10, False),
        (2, TS - 5000, True),
    ]
    assert [m.value for m in decoded.metrics] == [2**16 - 5, 2**16 - 6, True]
    birth_types = {1: DataType.Int16, 2: DataType.Boolean}
    assert [coerce(m.value, birth_types[m.alias or 0]) for m in decoded.metrics] == [-5, -6, True]


@pytest.mark.parametrize(
    ("value", "datatype", "expected"),
    [
        (None, DataType.Int8, None),
        (255, DataType.Int8, -1),
        (0xFFFFFFFF, DataType.Int8, -1),
        (-1, DataType.Int8, -1),
        (2**64 - 1, DataType.Int64, -1),
        (2**32 - 1, DataType.UInt32, 2**32 - 1),
        (1, DataType.Double, 1.0),
        ("x", DataType.Text, "x"),
    ],
)
def test_coerce(
    value: MetricValue | None, datatype: DataType, expected: MetricValue | None
) -> None:
    assert coerce(value, datatype) == expected


@pytest.mark.parametrize(
    ("value", "datatype"),
    [
        (256, DataType.Int8),
        (2**32, DataType.Int32),
        (256, DataType.UInt8),
        (-1, DataType.UInt32),
        (True, DataType.Int32),
        (1.5, DataType.Int32),
        ("1", DataType.Int32),
        (1, DataType.Boolean),
        (b"x", DataType.String),
        ("x", DataType.Bytes),
        (1e300, DataType.Float),
        (1, DataType.DataSet),
        (1, DataType.Unknown),
    ],
)
def test_coerce_rejects(value: MetricValue, datatype: DataType) -> None:
    with pytest.raises(PayloadError):
        coerce(value, datatype)


@pytest.mark.parametrize(
    ("datatype", "value", "fragment"),
    [
        (DataType.Int8, 300, "does not fit Int8"),
        (DataType.Int8, 128, "does not fit Int8"),
        (DataType.Int8, -129, "does not fit Int8"),
        (DataType.Int16, 32768, "does not fit Int16"),
        (DataType.Int32, 2**31, "does not fit Int32"),
        (DataType.Int64, 2**63, "does not fit Int64"),
        (DataType.Int64, -(2**63) - 1, "does not fit Int64"),
        (DataType.UInt8, -1, "does not fit UInt8"),
        (DataType.UInt8, 256, "does not fit UInt8"),
        (DataType.UInt16, 65536, "does not fit UInt16"),
        (DataType.UInt32, 2**32, "does not fit UInt32"),
        (DataType.UInt64, 2**64, "does not fit UInt64"),
        (DataType.UInt64, -1, "does not fit UInt64"),
        (DataType.DateTime, -1, "does not fit DateTime"),
        (DataType.Int32, True, "needs an int"),
        (DataType.Int32, 1.0, "needs an int"),
        (DataType.Int32, "1", "needs an int"),
        (DataType.Double, "1.0", "needs a float"),
        (DataType.Double, True, "needs a float"),
        (DataType.Double, 10**400, "does not fit Double"),
        (DataType.Float, 3.5e38, "does not fit Float"),
        (DataType.Float, b"1", "needs a float"),
        (DataType.Boolean, 1, "needs a bool"),
        (DataType.Boolean, "true", "needs a bool"),
        (DataType.String, b"x", "needs a str"),
        (DataType.String, 1, "needs a str"),
        (DataType.Text, "bad \ud800 surrogate", "surrogate"),
        (DataType.Bytes, "x", "needs a bytes"),
        (DataType.File, bytearray(b"x"), "needs a bytes"),
        (DataType.DataSet, b"", "not supported"),
        (DataType.Template, b"", "not supported"),
        (DataType.PropertySet, b"", "not supported"),
        (DataType.Int32Array, b"\x00\x00\x00\x00", "not supported"),
        (DataType.Unknown, 1, "not supported"),
    ],
)
def test_encode_rejects_values_that_do_not_fit(
    datatype: DataType, value: object, fragment: str
) -> None:
    metric = Metric(name="Spindle/Speed", datatype=datatype, value=value)  # type: ignore[arg-type]
    with pytest.raises(PayloadError) as info:
        encode_payload(
            Payload(metrics=(Metric(name="ok", datatype=DataType.Int8, value=1), metric))
        )
    assert "'Spindle/Speed'" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        (Metric(name="m", datatype=DataType.Int32), "value is None"),
        (Metric(name="m", datatype=DataType.Int32, value=1, is_null=True), "is_null"),
        (Metric(name="m", value=1), "datatype is needed"),
        (Metric(alias=7, value=1), "#0 (alias 7)"),
        (Metric(name="", datatype=DataType.Int32, value=1), "name must not be empty"),
        (Metric(name="m", alias=-1, datatype=DataType.Int32, value=1), "alias"),
        (Metric(name="m", alias=2**64, datatype=DataType.Int32, value=1), "alias"),
        (Metric(name="m", timestamp=-1, datatype=DataType.Int32, value=1), "timestamp"),
        (Metric(name="m", timestamp=True, datatype=DataType.Int32, value=1), "timestamp"),
        (Metric(name="\ud800", datatype=DataType.Int32, value=1), "surrogate"),
    ],
)
def test_encode_rejects_invalid_metrics(metric: Metric, fragment: str) -> None:
    with pytest.raises(PayloadError) as info:
        encode_payload(Payload(metrics=(metric,)))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        Payload(seq=256),
        Payload(seq=-1),
        Payload(seq=True),
        Payload(timestamp=-1),
        Payload(timestamp=2**64),
        Payload(uuid="\ud800"),
        Payload(body="text"),  # type: ignore[arg-type]
    ],
)
def test_encode_rejects_invalid_payload_fields(payload: Payload) -> None:
    with pytest.raises(PayloadError):
        encode_payload(payload)


def _with(**fields: object) -> bytes:
    return _raw(pb.Payload.Metric(name="m", **fields))  # type: ignore[arg-type]


def _dataset_metric() -> bytes:
    metric = pb.Payload.Metric(name="m", datatype=DataType.DataSet)
    metric.dataset_value.num_of_columns = 1
    metric.dataset_value.columns.append("a")
    return _raw(metric)


def _template_metric(datatype: int) -> bytes:
    metric = pb.Payload.Metric(name="m", datatype=datatype)
    metric.template_value.template_ref = "Motor"
    return _raw(metric)


def _extension_metric() -> bytes:
    metric = pb.Payload.Metric(name="m")
    metric.extension_value.SetInParent()
    return _raw(metric)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_dataset_metric(), "datatype DataSet is not supported"),
        (_template_metric(DataType.Template), "datatype Template is not supported"),
        (_template_metric(0), "Template values are not supported"),
        (_extension_metric(), "extension values are not supported"),
        (_with(datatype=DataType.Int64Array, bytes_value=b"\0" * 8), "Int64Array is not supported"),
        (_with(datatype=99, int_value=1), "datatype 99 is not supported"),
        (_with(datatype=DataType.Int32, string_value="1"), "value in string_value"),
        (_with(datatype=DataType.Boolean, int_value=1), "value in int_value"),
        (_with(datatype=DataType.Int8, int_value=300), "does not fit Int8"),
        (_with(datatype=DataType.UInt8, int_value=256), "does not fit UInt8"),
        (_with(datatype=DataType.UInt32, long_value=2**32), "does not fit UInt32"),
        (_with(datatype=DataType.Int16, int_value=0xFFFF0000), "does not fit Int16"),
        (_raw(pb.Payload.Metric(alias=3, datatype=99)), "#0 (alias 3)"),
        (pb.Payload(seq=256).SerializeToString(), "seq 256"),
    ],
)
def test_decode_rejects_unsupported_or_invalid_values(data: bytes, fragment: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(data)
    assert fragment in str(info.value)


# Field 1 of Metric (name), field 15 (string_value) and field 4 of Payload (uuid) holding
# the invalid UTF-8 bytes ff fe.
_BAD_NAME = bytes([0x12, 4, 0x0A, 2, 0xFF, 0xFE])
_BAD_STRING = bytes([0x12, 6, 0x20, 12, 0x7A, 2, 0xFF, 0xFE])
_BAD_UUID = bytes([0x22, 2, 0xFF, 0xFE])


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"\x08",
        b"\x08\xff",
        b"\x12",
        b"\x12\x05\x0a",
        b"\x12\xff\xff\xff\xff\x0f",
        b"\x0b",
        b"\x00",
        b"\x07\x00",
        b"garbage that is not protobuf",
        _BAD_NAME,
        _BAD_STRING,
        _BAD_UUID,
        "not bytes",
        None,
    ],
)
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_payload(data)


def _sample() -> bytes:
    return encode_payload(
        Payload(
            timestamp=TS,
            seq=4,
            metrics=(
                Metric(
                    name="Node Control/Rebirth", alias=0, datatype=DataType.Boolean, value=False
                ),
                Metric(
                    name="Spindle/Speed", alias=1, timestamp=TS, datatype=DataType.Float, value=1.5
                ),
                Metric(name="Program", alias=2, datatype=DataType.String, value="O1000 (ROUGH)"),
                Metric(name="Count", alias=3, datatype=DataType.Int64, value=-3),
            ),
        )
    )


def test_truncated_payload_is_rejected() -> None:
    data = _sample()
    for cut in (1, 2, 10, len(data) - 1, len(data) - 5):
        with pytest.raises(PayloadError):
            decode_payload(data[:cut])
    for cut in range(len(data)):
        with contextlib.suppress(PayloadError):
            assert isinstance(decode_payload(data[:cut]), Payload)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fuzz_only_payload_error(seed: int) -> None:
    rng = random.Random(seed)
    sample = _sample()
    for _ in range(3000):
        choice = rng.random()
        if choice < 0.4:
            data = rng.randbytes(rng.randrange(0, 64))
        else:
            mutated = bytearray(sample)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            if choice > 0.8:
                del mutated[rng.randrange(len(mutated)) :]
            data = bytes(mutated)
        try:
            result = decode_payload(data)
        except PayloadError:
            continue
        assert isinstance(result, Payload)


def test_datatype_mirrors_proto_enum() -> None:
    proto = {v.name: v.number for v in pb.DataType.DESCRIPTOR.values}
    assert {d.name: d.value for d in DataType} == proto


@pytest.mark.parametrize(("seq", "expected"), [(0, 1), (41, 42), (254, 255), (255, 0)])
def test_next_seq(seq: int, expected: int) -> None:
    assert next_seq(seq) == expected


def test_decoded_metrics_are_ordinary_frozen_metrics() -> None:
    metric = Metric(name="m", alias=1, timestamp=TS, datatype=DataType.Int8, value=-1)
    decoded = _one(metric)
    assert decoded == metric
    assert hash(decoded) == hash(metric)
    assert repr(decoded) == repr(metric)
    with pytest.raises(AttributeError):
        decoded.value = 2  # type: ignore[misc]


def test_ordinal_property_round_trip_and_bad_ordinal_refused() -> None:
    """A metric's plantwire.ordinal (the n-th value of its millisecond) is a UInt32 property
    on the wire, read back as ``ordinal``; absent means 0."""
    metrics = (
        Metric(name="a", timestamp=5, datatype=DataType.Int32, value=1),
        Metric(name="a", timestamp=5, datatype=DataType.Int32, value=2, ordinal=1),
    )
    wire = encode_payload(Payload(timestamp=5, seq=0, metrics=metrics))
    raw = pb.Payload()
    raw.ParseFromString(wire)
    assert list(raw.metrics[1].properties.keys) == [ORDINAL]
    assert raw.metrics[1].properties.values[0].int_value == 1
    assert not raw.metrics[0].HasField("properties")
    assert [m.ordinal for m in decode_payload(wire).metrics] == [0, 1]
    with pytest.raises(PayloadError, match=r"plantwire\.ordinal"):
        encode_payload(Payload(metrics=(replace(metrics[1], ordinal=MAX_ORDINAL + 1),)))
