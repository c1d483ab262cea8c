"""Sparkplug B 3.0 payload codec: plain Python values in, protobuf bytes out, and back.

Values are placed by datatype as the specification says: Int8..Int32 and UInt8..UInt32 in
``int_value``, Int64/UInt64/DateTime in ``long_value``, Float in ``float_value``, Double in
``double_value``, Boolean in ``boolean_value``, String/Text/UUID in ``string_value`` and
Bytes/File in ``bytes_value``. Negative signed values are written as two's complement of
their own width (Int8 -1 -> 255), like Eclipse Tahu (Python) and pysparkplug; on decode the
32- and 64-bit sign-extended forms written by C/Java producers (Int8 -1 -> 0xFFFFFFFF) are
accepted too.

Data messages (NDATA/DDATA) usually carry an alias and no datatype. Such metrics decode
with ``datatype=None`` and the raw value of whichever field is set, so integers come back
unsigned; the caller looks the datatype up from the birth and calls :func:`coerce`.

DataSet, Template, PropertySet and array metrics are not supported yet: both directions
reject them with :class:`PayloadError`.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, TypeAlias

from google.protobuf.message import DecodeError

from plantwire_bus.sparkplug_b_pb2 import Payload as _PbPayload

MetricValue: TypeAlias = int | float | bool | str | bytes
"""Python types a metric value can take."""


class DataType(IntEnum):
    """Sparkplug B datatypes (numbers as in the ``DataType`` enum of sparkplug_b.proto)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


INTEGER_TYPES = frozenset(
    {
        DataType.Int8,
        DataType.Int16,
        DataType.Int32,
        DataType.Int64,
        DataType.UInt8,
        DataType.UInt16,
        DataType.UInt32,
        DataType.UInt64,
    }
)
"""Datatypes whose values are Python ints."""
NUMERIC_TYPES = INTEGER_TYPES | {DataType.Float, DataType.Double, DataType.DateTime}
"""Datatypes stored as numbers (DateTime as milliseconds since the epoch)."""
TEXT_TYPES = frozenset({DataType.String, DataType.Text, DataType.UUID})
"""Datatypes whose values are Python strs."""


class PayloadError(ValueError):
    """A payload cannot be encoded or decoded."""


ORDINAL = "plantwire.ordinal"
"""Metric property of plantwire's extension (:mod:`plantwire_bus.extension`): the n-th value
of the metric within its millisecond."""
MAX_ORDINAL = 999  # values of one metric within one millisecond beyond the first


@dataclass(frozen=True, slots=True)
class Metric:
    """One Sparkplug metric; ``timestamp`` is milliseconds since the Unix epoch; ``ordinal``
    the :data:`ORDINAL` property (0: none)."""

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: DataType | None = None
    value: MetricValue | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    ordinal: int = 0


@dataclass(frozen=True, slots=True)
class Payload:
    """One Sparkplug B payload; ``seq`` is 0..255, ``timestamp`` milliseconds since epoch."""

    timestamp: int | None = None
    seq: int | None = None
    metrics: tuple[Metric, ...] = ()
    uuid: str | None = None
    body: bytes | None = None


def next_seq(seq: int) -> int:
    """The Sparkplug sequence number after ``seq`` (wraps from 255 to 0)."""
    return (seq + 1) % 256


# --- value conversions --------------------------------------------------------------------

_U32 = 1 << 32
_U64 = 1 << 64
_F32 = struct.Struct("<f")
_Convert: TypeAlias = Callable[[Any], Any]


def _as_int(value: object, datatype: DataType) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{datatype.name} needs an int, got {type(value).__name__}")
    return int(value)


def _as_float(value: object, datatype: DataType) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{datatype.name} needs a float, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise PayloadError(f"{value!r} does not fit {datatype.name}") from None


def _signed(datatype: DataType, bits: int) -> tuple[_Convert, _Convert]:
    """Encoder and decoder for a signed integer type of ``bits`` width."""
    half, full = 1 << (bits - 1), 1 << bits

    def encode(value: object) -> int:
        number = _as_int(value, datatype)
        if not -half <= number < half:
            raise PayloadError(f"{number} does not fit {datatype.name} ({-half}..{half - 1})")
        return number + full if number < 0 else number

    def decode(number: int) -> int:
        if -half <= number < half:
            return number
        if half <= number < full:
            return number - full
        if bits < 32 and _U32 - half <= number < _U32:
            return number - _U32
        if bits < 64 and _U64 - half <= number < _U64:
            return number - _U64
        raise PayloadError(f"{number} does not fit {datatype.name}")

    return encode, decode


def _unsigned(datatype: DataType, bits: int) -> tuple[_Convert, _Convert]:
    """Encoder and decoder for an unsigned integer type of ``bits`` width."""
    full = 1 << bits

    def encode(value: object) -> int:
        number = _as_int(value, datatype)
        if not 0 <= number < full:
            raise PayloadError(f"{number} does not fit {datatype.name} (0..{full - 1})")
        return number

    def decode(number: int) -> int:
        if not 0 <= number < full:
            raise PayloadError(f"{number} does not fit {datatype.name}")
        return number

    return encode, decode


def _typed(datatype: DataType, kind: type) -> _Convert:
    def check(value: object) -> object:
        if not isinstance(value, kind):
            raise PayloadError(
                f"{datatype.name} needs a {kind.__name__}, got {type(value).__name__}"
            )
        return value

    return check


def _float32(value: object) -> float:
    number = _as_float(value, DataType.Float)
    try:
        _F32.pack(number)
    except OverflowError:
        raise PayloadError(f"{value!r} does not fit Float (float32)") from None
    return number


def _float64(value: object) -> float:
    return _as_float(value, DataType.Double)


def _utf8(value: str | bytes) -> str:
    # proto2 strings are not UTF-8 checked on parse; the runtime hands invalid ones as bytes.
    if type(value) is not str:
        raise PayloadError("string is not valid UTF-8")
    return value


class _Codec(NamedTuple):
    field: str  # oneof field written on encode
    encode: _Convert  # checks a Python value, returns the wire value
    accepted: tuple[str, ...]  # oneof fields accepted on decode
    decode: _Convert | None  # wire value -> Python value (None: unchanged)
    coerce: _Convert  # raw alias-only value -> Python value


_INT_FIELDS = ("int_value", "long_value")
_FLOAT_FIELDS = ("float_value", "double_value")


def _int_codec(datatype: DataType, field: str, bits: int, signed: bool) -> _Codec:
    encode, decode = (_signed if signed else _unsigned)(datatype, bits)
    return _Codec(field, encode, _INT_FIELDS, decode, lambda v: decode(_as_int(v, datatype)))


def _plain_codec(datatype: DataType, field: str, kind: type) -> _Codec:
    check = _typed(datatype, kind)
    return _Codec(field, check, (field,), _utf8 if kind is str else None, check)


_CODECS: dict[DataType, _Codec] = {
    DataType.Int8: _int_codec(DataType.Int8, "int_value", 8, signed=True),
    DataType.Int16: _int_codec(DataType.Int16, "int_value", 16, signed=True),
    DataType.Int32: _int_codec(DataType.Int32, "int_value", 32, signed=True),
    DataType.Int64: _int_codec(DataType.Int64, "long_value", 64, signed=True),
    DataType.UInt8: _int_codec(DataType.UInt8, "int_value", 8, signed=False),
    DataType.UInt16: _int_codec(DataType.UInt16, "int_value", 16, signed=False),
    DataType.UInt32: _int_codec(DataType.UInt32, "int_value", 32, signed=False),
    DataType.UInt64: _int_codec(DataType.UInt64, "long_value", 64, signed=False),
    DataType.DateTime: _int_codec(DataType.DateTime, "long_value", 64, signed=False),
    DataType.Float: _Codec("float_value", _float32, _FLOAT_FIELDS, None, _float32),
    DataType.Double: _Codec("double_value", _float64, _FLOAT_FIELDS, None, _float64),
    DataType.Boolean: _plain_codec(DataType.Boolean, "boolean_value", bool),
    DataType.String: _plain_codec(DataType.String, "string_value", str),
    DataType.Text: _plain_codec(DataType.Text, "string_value", str),
    DataType.UUID: _plain_codec(DataType.UUID, "string_value", str),
    DataType.Bytes: _plain_codec(DataType.Bytes, "bytes_value", bytes),
    DataType.File: _plain_codec(DataType.File, "bytes_value", bytes),
}

# wire datatype number -> {set oneof field -> decoder or None}; 0 means "no datatype given".
_DECODERS: dict[int, dict[str, _Convert | None]] = {
    dt.value: dict.fromkeys(codec.accepted, codec.decode) for dt, codec in _CODECS.items()
}
_DECODERS[0] = dict.fromkeys((*_INT_FIELDS, *_FLOAT_FIELDS, "boolean_value", "bytes_value"))
_DECODERS[0]["string_value"] = _utf8
_DATATYPES: dict[int, DataType | None] = {dt.value: dt for dt in _CODECS} | {0: None}

_UNSUPPORTED_FIELDS = {
    "dataset_value": "DataSet",
    "template_value": "Template",
    "extension_value": "extension",
}


def coerce(value: MetricValue | None, datatype: DataType) -> MetricValue | None:
    """Reinterpret a value decoded without datatype (alias-only data metric) as ``datatype``.

    Turns the unsigned wire form of signed integers back into negative numbers, checks the
    range of the others and the kind of the rest; raises :class:`PayloadError` if it does
    not fit. Already coerced values pass unchanged.
    """
    if value is None:
        return None
    codec = _CODECS.get(datatype)
    if codec is None:
        raise PayloadError(f"datatype {_dt_name(datatype)} is not supported")
    result: MetricValue = codec.coerce(value)
    return result


def _dt_name(datatype: int) -> str:
    try:
        return DataType(datatype).name
    except ValueError:
        return str(datatype)


# --- encoding -----------------------------------------------------------------------------


def _check_u64(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64:
        raise PayloadError(f"{what} {value!r} is not an integer in 0..2**64-1")
    return value


def _label(name: str | None, alias: int | None, index: int) -> str:
    if name:
        return repr(name)
    return f"#{index} (alias {alias})" if alias is not None else f"#{index}"


def _encode_metric(out: _PbPayload.Metric, metric: Metric, omit_datatypes: bool) -> None:
    if metric.name is not None:
        if not metric.name:
            raise PayloadError("name must not be empty")
        out.name = metric.name
    if metric.alias is not None:
        out.alias = _check_u64(metric.alias, "alias")
    if metric.timestamp is not None:
        out.timestamp = _check_u64(metric.timestamp, "timestamp")
    if metric.is_historical:
        out.is_historical = True
    if metric.is_transient:
        out.is_transient = True
    if metric.ordinal:
        if not 0 < metric.ordinal <= MAX_ORDINAL:
            raise PayloadError(f"{ORDINAL} must be 0..{MAX_ORDINAL}")
        out.properties.keys.append(ORDINAL)
        prop = out.properties.values.add()
        prop.type = DataType.UInt32
        prop.int_value = metric.ordinal
    datatype = metric.datatype
    codec = None
    if datatype is not None:
        codec = _CODECS.get(datatype)
        if codec is None:
            raise PayloadError(f"datatype {_dt_name(datatype)} is not supported")
        if not omit_datatypes:
            out.datatype = datatype
    if metric.is_null:
        if metric.value is not None:
            raise PayloadError("is_null is set but value is not None")
        out.is_null = True
    elif metric.value is None:
        raise PayloadError("value is None; set is_null=True for a null value")
    elif codec is None:
        raise PayloadError("a datatype is needed to encode the value")
    else:
        setattr(out, codec.field, codec.encode(metric.value))


def encode_payload(payload: Payload, *, omit_datatypes: bool = False) -> bytes:
    """Serialize ``payload`` to Sparkplug B protobuf bytes.

    ``omit_datatypes=True`` still places values by datatype but leaves the datatype off the
    wire, as the specification recommends for NDATA/DDATA/NCMD/DCMD.
    """
    out = _PbPayload()
    if payload.timestamp is not None:
        out.timestamp = _check_u64(payload.timestamp, "timestamp")
    if payload.seq is not None:
        seq = payload.seq
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 255:
            raise PayloadError(f"seq {seq!r} is not an integer in 0..255")
        out.seq = seq
    try:
        if payload.uuid is not None:
            out.uuid = payload.uuid
        if payload.body is not None:
            out.body = payload.body
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"invalid payload field: {exc}") from None
    add = out.metrics.add
    for index, metric in enumerate(payload.metrics):
        try:
            _encode_metric(add(), metric, omit_datatypes)
        except (TypeError, ValueError, AttributeError) as exc:
            label = _label(getattr(metric, "name", None), getattr(metric, "alias", None), index)
            raise PayloadError(f"metric {label}: {exc}") from None
    result: bytes = out.SerializeToString()
    return result


# --- decoding -----------------------------------------------------------------------------

# Frozen dataclass __init__ goes through object.__setattr__ per field (about 1.4 µs for
# Metric); the ingest decodes many metrics, so decoding fills the slots directly instead.
_set_name = Metric.__dict__["name"].__set__
_set_alias = Metric.__dict__["alias"].__set__
_set_timestamp = Metric.__dict__["timestamp"].__set__
_set_datatype = Metric.__dict__["datatype"].__set__
_set_value = Metric.__dict__["value"].__set__
_set_historical = Metric.__dict__["is_historical"].__set__
_set_transient = Metric.__dict__["is_transient"].__set__
_set_null = Metric.__dict__["is_null"].__set__
_set_ordinal = Metric.__dict__["ordinal"].__set__
_new = object.__new__


def _decode_metric(pb: _PbPayload.Metric, index: int) -> Metric:
    name = pb.name or None
    alias: int | None = pb.alias
    if not alias and not pb.HasField("alias"):
        alias = None
    timestamp: int | None = pb.timestamp
    if not timestamp and not pb.HasField("timestamp"):
        timestamp = None
    number = pb.datatype
    field = pb.WhichOneof("value")
    is_null = pb.is_null
    value = None
    try:
        if name is not None and type(name) is not str:
            raise PayloadError("name is not valid UTF-8")
        decoders = _DECODERS.get(number)
        if decoders is None:
            raise PayloadError(f"datatype {_dt_name(number)} is not supported")
        if field is not None and not is_null:
            if field in decoders:
                decoder = decoders[field]
                value = getattr(pb, field)
                if decoder is not None:
                    value = decoder(value)
            elif field in _UNSUPPORTED_FIELDS:
                raise PayloadError(f"{_UNSUPPORTED_FIELDS[field]} values are not supported")
            else:
                raise PayloadError(f"datatype {_dt_name(number)} but value in {field}")
    except PayloadError as exc:
        raise PayloadError(f"metric {_label(name, alias, index)}: {exc}") from None
    metric = _new(Metric)
    _set_name(metric, name)
    _set_alias(metric, alias)
    _set_timestamp(metric, timestamp)
    _set_datatype(metric, _DATATYPES[number])
    _set_value(metric, value)
    _set_historical(metric, pb.is_historical)
    _set_transient(metric, pb.is_transient)
    _set_null(metric, is_null)
    _set_ordinal(metric, _ordinal(pb, name, alias, index) if pb.HasField("properties") else 0)
    return metric


def _ordinal(pb: _PbPayload.Metric, name: str | None, alias: int | None, index: int) -> int:
    props = pb.properties
    for key, prop in zip(props.keys, props.values, strict=False):
        if key == ORDINAL:
            which = prop.WhichOneof("value")
            n = prop.int_value if which == "int_value" else prop.long_value
            if which not in ("int_value", "long_value") or not 0 <= n <= MAX_ORDINAL:
                label = _label(name, alias, index)
                raise PayloadError(f"metric {label}: {ORDINAL} must be 0..{MAX_ORDINAL}")
            return int(n)
    return 0


def decode_payload(data: bytes) -> Payload:
    """Parse Sparkplug B protobuf bytes; raises :class:`PayloadError` on anything invalid."""
    pb = _PbPayload()
    try:
        pb.ParseFromString(data)
        metrics = tuple([_decode_metric(m, i) for i, m in enumerate(pb.metrics)])
        seq = pb.seq if pb.HasField("seq") else None
        if seq is not None and seq > 255:
            raise PayloadError(f"seq {seq} is out of range 0..255")
        uuid = pb.uuid if pb.HasField("uuid") else None
        if uuid is not None and type(uuid) is not str:
            raise PayloadError("uuid is not valid UTF-8")
        return Payload(
            timestamp=pb.timestamp if pb.HasField("timestamp") else None,
            seq=seq,
            metrics=metrics,
            uuid=uuid,
            body=pb.body if pb.HasField("body") else None,
        )
    except PayloadError:
        raise
    except (DecodeError, ValueError, TypeError, RuntimeError) as exc:
        raise PayloadError(f"not a Sparkplug B payload: {exc}") from None
