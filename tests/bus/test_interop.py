"""Interoperability with pysparkplug, an independent Sparkplug B implementation."""

import datetime

import pysparkplug as sp
import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor
from pysparkplug import _protobuf as theirs

from plantwire_bus import sparkplug_b_pb2 as pb
from plantwire_bus.payload import (
    DataType,
    Metric,
    MetricValue,
    Payload,
    coerce,
    decode_payload,
    encode_payload,
)
from plantwire_bus.topics import (
    MessageType,
    Topic,
    decode_state,
    encode_state,
    parse_topic,
    state_topic,
)

TS = 1_700_000_000_123
UTC = datetime.UTC

# (name, datatype, value) covering every scalar type both implementations support.
BIRTH_METRICS: list[tuple[str, DataType, MetricValue]] = [
    ("Node Control/Rebirth", DataType.Boolean, False),
    ("Axes/X/Load", DataType.Int8, -128),
    ("Axes/Y/Load", DataType.Int8, 127),
    ("Temp/Coolant", DataType.Int16, -273),
    ("Counter/Signed", DataType.Int32, -(2**31)),
    ("Counter/Total", DataType.Int64, -(2**63)),
    ("Counter/Max", DataType.Int64, 2**63 - 1),
    ("Status/Word", DataType.UInt8, 255),
    ("Status/Long", DataType.UInt16, 65535),
    ("Parts/Good", DataType.UInt32, 2**32 - 1),
    ("Parts/Lifetime", DataType.UInt64, 2**64 - 1),
    ("Spindle/Speed", DataType.Float, 0.5),
    ("Feed/Override", DataType.Double, 0.1),
    ("Program/Name", DataType.String, "O1000 – Schruppen ✓"),
    ("Program/Empty", DataType.String, ""),
    ("Program/Text", DataType.Text, "G0 X0\nG1 X10 F200"),
    ("Program/Id", DataType.UUID, "0f8fad5b-d9cb-469f-a165-70867728950e"),
    ("Program/Image", DataType.Bytes, b"\x00\x01\xfe\xff"),
    ("Program/File", DataType.File, b"%\nO1000\n%"),
]
DATETIME_MS = 1_704_067_200_500  # 2024-01-01T00:00:00.5Z, exact as a float of seconds


def _ours_birth(seq: int = 0) -> Payload:
    metrics = [
        Metric(name=name, alias=i, timestamp=TS + i, datatype=datatype, value=value)
        for i, (name, datatype, value) in enumerate(BIRTH_METRICS)
    ]
    metrics.append(
        Metric(name="Clock", alias=100, timestamp=TS, datatype=DataType.DateTime, value=DATETIME_MS)
    )
    metrics.append(Metric(name="Alarm/Text", alias=101, datatype=DataType.String, is_null=True))
    return Payload(timestamp=TS, seq=seq, metrics=tuple(metrics))


def _theirs_metrics() -> tuple[sp.Metric, ...]:
    metrics = [
        sp.Metric(
            timestamp=TS + i,
            name=name,
            datatype=sp.DataType(datatype.value),
            value=value,
            alias=i,
        )
        for i, (name, datatype, value) in enumerate(BIRTH_METRICS)
    ]
    clock = datetime.datetime.fromtimestamp(DATETIME_MS / 1000, tz=UTC)
    metrics.append(sp.Metric(TS, "Clock", sp.DataType.DATETIME, clock, alias=100))
    metrics.append(sp.Metric(TS, "Alarm/Text", sp.DataType.STRING, None, alias=101, is_null=True))
    return tuple(metrics)


def _theirs_value(metric: sp.Metric) -> object:
    if isinstance(metric.value, datetime.datetime):
        return round(metric.value.timestamp() * 1000)
    return metric.value


@pytest.mark.parametrize("birth_type", [sp.NBirth, sp.DBirth])
def test_our_birth_decoded_by_pysparkplug(birth_type: type[sp.NBirth] | type[sp.DBirth]) -> None:
    ours = _ours_birth(seq=7)
    theirs = birth_type.decode(encode_payload(ours))
    assert theirs.timestamp == TS
    assert theirs.seq == 7
    decoded = list(theirs.metrics)
    assert len(decoded) == len(ours.metrics)
    for mine, their in zip(ours.metrics, decoded, strict=True):
        assert their.name == mine.name
        assert their.alias == mine.alias
        assert their.timestamp == mine.timestamp
        assert int(their.datatype) == mine.datatype
        assert their.is_null == mine.is_null
        assert not their.is_historical
        assert _theirs_value(their) == mine.value


@pytest.mark.parametrize("birth_type", [sp.NBirth, sp.DBirth])
def test_pysparkplug_birth_decoded_by_us(birth_type: type[sp.NBirth] | type[sp.DBirth]) -> None:
    theirs = birth_type(timestamp=TS, seq=3, metrics=_theirs_metrics())
    ours = decode_payload(theirs.encode())
    assert ours.timestamp == TS
    assert ours.seq == 3
    assert ours.uuid is None
    assert ours.body is None
    for their, mine in zip(theirs.metrics, ours.metrics, strict=True):
        assert mine.name == their.name
        assert mine.alias == their.alias
        assert mine.timestamp == their.timestamp
        assert mine.datatype == int(their.datatype)
        assert mine.is_null == their.is_null
        assert mine.value == _theirs_value(their)
    # and our decode of their bytes re-encodes to a payload they decode identically
    assert birth_type.decode(encode_payload(ours)) == theirs


# (alias, timestamp offset, value, is_historical) for a DDATA against the birth above.
DATA_POINTS: list[tuple[int, int, MetricValue, bool]] = [
    (1, 0, -5, False),  # Int8
    (1, 100, -6, False),
    (1, -60_000, 17, True),
    (3, 5, -1, False),  # Int16
    (4, 5, -7, True),  # Int32
    (5, 5, -(2**40), False),  # Int64
    (9, 5, 4_000_000_000, False),  # UInt32
    (11, 5, 1.25, False),  # Float
    (12, 5, -0.3, True),  # Double
    (13, 5, "O2000", False),  # String
    (0, 5, True, False),  # Boolean
]


def _birth_type(alias: int) -> DataType:
    return BIRTH_METRICS[alias][1]


def _ours_data(seq: int) -> Payload:
    metrics = tuple(
        Metric(
            alias=alias,
            timestamp=TS + offset,
            datatype=_birth_type(alias),
            value=value,
            is_historical=historical,
        )
        for alias, offset, value, historical in DATA_POINTS
    )
    return Payload(timestamp=TS + 1000, seq=seq, metrics=metrics)


@pytest.mark.parametrize("omit_datatypes", [True, False])
@pytest.mark.parametrize("data_type", [sp.NData, sp.DData])
def test_our_data_decoded_by_pysparkplug(
    omit_datatypes: bool, data_type: type[sp.NData] | type[sp.DData]
) -> None:
    birth = sp.DBirth.decode(encode_payload(_ours_birth()))
    data = encode_payload(_ours_data(seq=8), omit_datatypes=omit_datatypes)
    theirs = data_type.decode(data, birth=birth)
    assert theirs.timestamp == TS + 1000
    assert theirs.seq == 8
    for (alias, offset, value, historical), their in zip(DATA_POINTS, theirs.metrics, strict=True):
        assert their.alias == alias
        assert their.name == BIRTH_METRICS[alias][0]  # resolved from the birth by alias
        assert int(their.datatype) == _birth_type(alias)
        assert their.timestamp == TS + offset
        assert their.is_historical == historical
        assert their.value == value


def test_pysparkplug_data_decoded_by_us_and_coerced_from_birth() -> None:
    metrics = [
        sp.Metric(
            timestamp=TS + offset,
            name=None,
            datatype=sp.DataType(_birth_type(alias).value),
            value=value,
            alias=alias,
            is_historical=historical,
        )
        for alias, offset, value, historical in DATA_POINTS
    ]
    theirs = sp.DData(timestamp=TS + 1000, seq=9, metrics=metrics)
    ours = decode_payload(theirs.encode())  # pysparkplug leaves datatypes off data messages
    assert ours.timestamp == TS + 1000
    assert ours.seq == 9
    birth = {m.alias: m.datatype for m in decode_payload(encode_payload(_ours_birth())).metrics}
    for (alias, offset, value, historical), mine in zip(DATA_POINTS, ours.metrics, strict=True):
        assert mine.name is None
        assert mine.alias == alias
        assert mine.datatype is None
        assert mine.timestamp == TS + offset
        assert mine.is_historical == historical
        datatype = birth[alias]
        assert datatype is not None
        assert coerce(mine.value, datatype) == value


def test_pysparkplug_data_with_datatypes_decoded_by_us() -> None:
    metric = sp.Metric(TS, None, sp.DataType.INT32, -42, alias=4, is_historical=True)
    theirs = sp.DData(timestamp=TS, seq=0, metrics=[metric])
    (mine,) = decode_payload(theirs.encode(include_dtypes=True)).metrics
    assert mine == Metric(
        alias=4, timestamp=TS, datatype=DataType.Int32, value=-42, is_historical=True
    )


@pytest.mark.parametrize(
    ("message_type", "device_id"),
    [(t, "cnc-7" if t.is_device else None) for t in MessageType],
)
def test_topics_both_ways(message_type: MessageType, device_id: str | None) -> None:
    theirs = sp.Topic(
        group_id="plant1",
        message_type=sp.MessageType(message_type.value),
        edge_node_id="edge-01",
        device_id=device_id,
    )
    parsed = parse_topic(str(theirs))
    assert parsed == Topic("plant1", message_type, "edge-01", device_id)
    ours = Topic("plant1", message_type, "edge-01", device_id)
    back = sp.Topic.from_str(str(ours))
    assert (back.group_id, back.edge_node_id, back.device_id) == ("plant1", "edge-01", device_id)
    assert str(back.message_type) == message_type.value


def test_state_topic_and_payload_both_ways() -> None:
    theirs = sp.Topic(message_type=sp.MessageType.STATE, sparkplug_host_id="scada-1")
    assert state_topic("scada-1") == str(theirs)
    assert sp.Topic.from_str(state_topic("scada-1")).sparkplug_host_id == "scada-1"
    assert decode_state(sp.State(timestamp=TS, online=True).encode()) == (True, TS)
    assert sp.State.decode(encode_state(False, TS)) == sp.State(timestamp=TS, online=False)


def _shape(descriptor: Descriptor) -> dict[str, object]:
    """Wire-relevant structure of a message: field numbers, types, labels, nesting."""
    return {
        "fields": sorted(
            (f.number, f.name, f.type, f.is_repeated, f.message_type.name if f.message_type else "")
            for f in descriptor.fields
        ),
        "oneofs": sorted((o.name, sorted(f.number for f in o.fields)) for o in descriptor.oneofs),
        "extensions": sorted(descriptor.extension_ranges),
        "nested": {d.name: _shape(d) for d in descriptor.nested_types},
    }


def _enum(descriptor: EnumDescriptor) -> dict[str, int]:
    return {v.name: v.number for v in descriptor.values}


def test_schema_matches_pysparkplug_and_coexists_in_one_pool() -> None:
    assert pb.Payload.DESCRIPTOR.full_name == "plantwire.sparkplug_b.Payload"
    assert theirs.Payload.DESCRIPTOR.full_name == "org.eclipse.tahu.protobuf.Payload"
    assert pb.DESCRIPTOR.name == "plantwire_bus/sparkplug_b.proto"
    assert theirs.Payload.DESCRIPTOR.file.name == "sparkplug_b.proto"
    assert _shape(pb.Payload.DESCRIPTOR) == _shape(theirs.Payload.DESCRIPTOR)
    assert _enum(pb.DataType.DESCRIPTOR) == _enum(theirs.DataType.DESCRIPTOR)
