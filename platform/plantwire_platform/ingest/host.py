"""The Sparkplug host application's logic, without I/O.

Topics are classified with :func:`classify`; births and deaths are read into :class:`Birth` and
:class:`Death`; data messages are resolved against the alias tables of births
(:class:`Generation`, kept per node or device in an :class:`AliasBook`) and appended straight
to a :class:`~plantwire_platform.ingest.batch.Batch` by :func:`decode_data`, the ingest's hot path:
it reads the protobuf fields it needs and no more, and builds no per-sample objects.

Data is resolved against the birth in force when it was sent: the newest birth whose timestamp
is not after the data's payload timestamp. That keeps a lagging worker of a shared
subscription right even when a rebirth has changed the aliases meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError

from plantwire_bus.extension import CLOCK_RATE, MAX_ORDINAL, ORDINAL
from plantwire_bus.payload import (
    NUMERIC_TYPES,
    TEXT_TYPES,
    DataType,
    Metric,
    Payload,
    PayloadError,
    coerce,
)
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_bus.state import EXECUTION_METRIC, MODE_METRIC
from plantwire_bus.topics import NAMESPACE, MessageType
from plantwire_platform.ingest.batch import (
    BOOL,
    NUM,
    NUM_ROW,
    PG_EPOCH_MS,
    TEXT,
    Batch,
    Problems,
    Target,
)
from plantwire_platform.ingest.node_clock import declared_rate

# Oldest and newest believable sample times: a PLC clock reset to 2000-01-01 is caught.
MIN_TS_MS = 946_771_200_000  # 2000-01-02T00:00:00Z
MAX_FUTURE_MS = 24 * 3600 * 1000

NOT_TELEMETRY = ("bdSeq", "Node Control/", "Device Control/")
STATE_METRICS = frozenset({MODE_METRIC, EXECUTION_METRIC})
EVENT_FOLDERS = frozenset({"alarm", "alarms", "event", "events"})

# Target flags
STATE = 1  # State/Mode, State/Execution: state intervals are kept
EVENT = 2  # Alarms/..., Events/...: also stored as events
TRANSIENT = 4  # is_transient in the birth: not historised

_KINDS = {kind.value: kind for kind in MessageType}


class Route(NamedTuple):
    """A classified Sparkplug topic."""

    kind: MessageType
    group_id: str
    edge_node_id: str
    device_id: str  # '' for node messages


def classify(topic: str) -> Route | str | None:
    """The route of an edge-node/device topic, None for topics the host ignores (STATE,
    commands), or a string saying why the topic is not valid Sparkplug."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        return f"not in the {NAMESPACE} namespace"
    if len(parts) == 3 and parts[1] == "STATE":
        return None
    if len(parts) not in (4, 5):
        return f"{len(parts)} topic elements, need 4 or 5"
    _, group, kind_name, node, *rest = parts
    kind = _KINDS.get(kind_name)  # (a dict: MessageType(...) costs an exception per miss)
    if kind is None:
        return f"unknown message type {kind_name[:40]!r}"
    if kind in (MessageType.NCMD, MessageType.DCMD):
        return None
    device = rest[0] if rest else ""
    if kind.is_device != bool(rest):
        return f"{kind} {'needs' if kind.is_device else 'must not have'} a device id"
    for element in (group, node, *rest):
        if not element or "+" in element or "#" in element or "\0" in element:
            return f"bad topic element {element[:40]!r}"
    return Route(kind, group, node, device)


def flags_for(name: str, transient: bool = False) -> int:
    flags = STATE if name in STATE_METRICS else 0
    if name.split("/", 1)[0].lower() in EVENT_FOLDERS:
        flags |= EVENT
    return flags | (TRANSIENT if transient else 0)


def kind_of(datatype: DataType) -> int | None:
    """Which sample table a datatype goes to (NUM, BOOL, TEXT), None if unsupported."""
    if datatype in NUMERIC_TYPES:
        return NUM
    if datatype is DataType.Boolean:
        return BOOL
    if datatype in TEXT_TYPES:
        return TEXT
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Sample timestamps accepted, in ms since the epoch."""

    lo: int
    hi: int

    @classmethod
    def around(cls, now: int, retention_days: int | None = None) -> TimeWindow:
        lo = MIN_TS_MS
        if retention_days is not None:
            lo = max(lo, now - retention_days * 86_400_000)
        return cls(lo, now + MAX_FUTURE_MS)


# -- births and deaths ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Birth:
    """An NBIRTH or DBIRTH: its metrics (telemetry only) and identifiers."""

    route: Route
    ts: int  # payload timestamp (ms); arrival time when missing
    seq: int | None
    bd_seq: int | None
    metrics: tuple[Metric, ...]
    problems: tuple[str, ...] = ()
    clock_rate: float | None = None  # NBIRTH: the node's declared clock rate (CLOCK_RATE)


@dataclass(frozen=True, slots=True)
class Death:
    route: Route
    ts: int  # DDEATH payload timestamp; NDEATH: arrival time (placed on the node's time line
    # by SharedState.record_death, plantwire_platform.ingest.node_clock)
    seq: int | None
    bd_seq: int | None


def read_birth(route: Route, payload: Payload, arrival_ms: int) -> Birth:
    """The telemetry metrics of a birth; metrics without name or datatype, or of unsupported
    datatypes, are reported in ``problems``."""
    bd_seq = None
    rate = None
    metrics = []
    problems = []
    names: set[str] = set()
    aliases: set[int] = set()
    node = route.kind is MessageType.NBIRTH
    for m in payload.metrics:
        if m.name == "bdSeq" and isinstance(m.value, int) and not isinstance(m.value, bool):
            bd_seq = m.value
        if node and m.name == CLOCK_RATE:  # session metadata, not telemetry
            rate = declared_rate(m.value)
            if rate is None:
                problems.append(f"{CLOCK_RATE}: not a number > 0")
            continue
        if m.name is None or m.datatype is None:
            problems.append("metric without name or datatype")
            continue
        if m.name.startswith(NOT_TELEMETRY):
            continue
        if "\0" in m.name or len(m.name) > 500:
            problems.append(f"{m.name[:80]!r}: bad metric name")
            continue
        if kind_of(m.datatype) is None:
            problems.append(f"{m.name[:80]}: unsupported datatype {m.datatype.name}")
            continue
        if m.name in names or (m.alias is not None and m.alias in aliases):
            problems.append(f"{m.name[:80]}: name or alias repeated")
            continue
        names.add(m.name)
        if m.alias is not None:
            aliases.add(m.alias)
        metrics.append(m)
    ts = payload.timestamp if payload.timestamp else arrival_ms
    return Birth(route, ts, payload.seq, bd_seq, tuple(metrics), tuple(problems), rate)


def read_death(route: Route, payload: Payload, arrival_ms: int) -> Death:
    bd_seq = next(
        (m.value for m in payload.metrics if m.name == "bdSeq" and isinstance(m.value, int)),
        None,
    )
    ts = arrival_ms
    if route.kind is MessageType.DDEATH and payload.timestamp:
        ts = payload.timestamp
    return Death(route, ts, payload.seq, None if isinstance(bd_seq, bool) else bd_seq)


# -- alias tables --------------------------------------------------------------------------
@dataclass(slots=True)
class Generation:
    """One birth of a node or device: how its data messages resolve."""

    birth_id: int
    birth_ts: int
    by_alias: dict[int, Target]
    by_name: dict[str, Target]
    death_ts: int | None = None
    worker: str = ""  # the ingest worker that stored the birth


@dataclass(slots=True)
class AliasBook:
    """The generations of every node and device known to this worker, newest last."""

    keep: int = 3
    _by_key: dict[tuple[str, str, str], list[Generation]] = field(default_factory=dict)

    def add(self, key: tuple[str, str, str], gen: Generation) -> None:
        gens = [g for g in self._by_key.get(key, []) if g.birth_id != gen.birth_id]
        gens.append(gen)
        gens.sort(key=lambda g: (g.birth_ts, g.birth_id))
        self._by_key[key] = gens[-self.keep :]

    def generations(self, key: tuple[str, str, str]) -> list[Generation]:
        return self._by_key.get(key, [])

    def find(self, key: tuple[str, str, str], payload_ts: int) -> Generation | None:
        """The birth in force at ``payload_ts`` (0: unknown, the newest)."""
        gens = self._by_key.get(key)
        if not gens:
            return None
        if payload_ts:
            for gen in reversed(gens):
                if gen.birth_ts <= payload_ts:
                    return gen
        return gens[-1]

    def mark_dead(self, key: tuple[str, str, str], death_ts: int) -> None:
        gens = self._by_key.get(key)
        if gens and gens[-1].death_ts is None:
            gens[-1].death_ts = death_ts


# -- values --------------------------------------------------------------------------------
_FLOATS = frozenset({"float_value", "double_value"})
_INTEGERS = frozenset({"int_value", "long_value"})
_ACCEPTED: dict[DataType, frozenset[str]] = {
    DataType.Double: _FLOATS,
    DataType.Float: _FLOATS,
    DataType.Boolean: frozenset({"boolean_value"}),
    DataType.String: frozenset({"string_value"}),
    DataType.Text: frozenset({"string_value"}),
    DataType.UUID: frozenset({"string_value"}),
}
for _dt in NUMERIC_TYPES - {DataType.Double, DataType.Float}:
    _ACCEPTED[_dt] = _INTEGERS


_DOUBLE, _FLOAT = DataType.Double, DataType.Float
PbMetric = PbPayload.Metric


class ValueProblem(Exception):
    """A data metric's value does not fit the datatype of its birth, or is refused."""

    def __init__(self, detail: str, reason: str = "type_mismatch") -> None:
        super().__init__(detail)
        self.reason = reason


def ordinal_of(pb: Any) -> int:
    """The :data:`~plantwire_bus.extension.ORDINAL` property of protobuf metric ``pb`` (0 if
    absent): the n-th value of the metric within its millisecond."""
    props = pb.properties
    for key, prop in zip(props.keys, props.values, strict=False):
        if key != ORDINAL:
            continue
        which = prop.WhichOneof("value")
        n = prop.int_value if which == "int_value" else prop.long_value
        if which not in ("int_value", "long_value") or not 0 <= n <= MAX_ORDINAL:
            raise ValueProblem(f"{ORDINAL} must be 0..{MAX_ORDINAL}", "bad_ordinal")
        return int(n)
    return 0


def metric_value(pb: Any, datatype: DataType) -> float | bool | str | None:
    """The value of protobuf metric ``pb`` as stored for ``datatype`` (numbers as float)."""
    which = pb.WhichOneof("value")
    if pb.is_null or which is None:
        return None
    if which not in _ACCEPTED.get(datatype, ()):
        raise ValueProblem(f"{which} for {datatype.name}")
    try:
        value = coerce(getattr(pb, which), datatype)
    except PayloadError as exc:
        raise ValueProblem(str(exc)) from None
    if datatype in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueProblem(f"not a number for {datatype.name}")
        number = float(value)
        if number - number != 0.0:  # NaN or ±Inf: no measurement, and poison for sums
            raise ValueProblem(f"{number} is not a finite number", "non_finite_value")
        return number
    if datatype is DataType.Boolean:
        if not isinstance(value, bool):
            raise ValueProblem("not a boolean")
        return value
    if not isinstance(value, str):
        raise ValueProblem(f"not a string for {datatype.name}")
    if "\0" in value:
        raise ValueProblem("string contains NUL")
    return value


def birth_value(m: Metric) -> float | bool | str | None:
    """A birth metric's value as stored (numbers as float)."""
    if m.is_null or m.value is None:
        return None
    value = m.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if number - number != 0.0:
            raise ValueProblem(f"{m.name}: {number} is not a finite number", "non_finite_value")
        return number
    if isinstance(value, str) and "\0" in value:
        raise ValueProblem("string contains NUL")
    if isinstance(value, bool | str):
        return value
    raise ValueProblem("bytes value")


# -- data: the hot path --------------------------------------------------------------------
def parse_data(data: bytes) -> tuple[Any, int | None, int]:
    """Parse an NDATA/DDATA payload: (protobuf message, seq or None, payload timestamp or 0);
    raises :class:`PayloadError` when the bytes are not a Sparkplug payload."""
    pb = PbPayload()
    try:
        pb.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise PayloadError(f"not a Sparkplug B payload: {exc}") from None
    seq = pb.seq if pb.HasField("seq") else None
    if seq is not None and seq > 255:
        raise PayloadError(f"seq {seq} is out of range 0..255")
    return pb, seq, pb.timestamp


def _targets(pb: Any, gen: Generation) -> list[Target | None]:
    """Each metric's target: by alias, else by name; None if the birth has neither."""
    by_alias, by_name = gen.by_alias, gen.by_name
    get = by_alias.get
    metrics = pb.metrics
    targets = [get(m.alias) for m in metrics]
    if None in targets or 0 in by_alias:
        for i, m in enumerate(metrics):
            if targets[i] is None or (m.alias == 0 and not m.HasField("alias")):
                targets[i] = by_name.get(m.name) if m.name else None
    return targets


def decode_data(
    pb: Any,
    gen: Generation,
    window: TimeWindow,
    default_ts: int,
    batch: Batch,
    problems: Problems,
    allow_unknown: bool,
) -> bool:
    """Append the samples of a parsed NDATA/DDATA payload, resolved against ``gen``.

    With ``allow_unknown`` False nothing is appended and False is returned if a metric is
    not in the birth (a newer birth may explain it); otherwise unknown metrics, bad values and
    timestamps are added to ``problems`` and the rest is stored.
    """
    targets = _targets(pb, gen)
    if not allow_unknown and None in targets:
        return False
    lo, hi = window.lo, window.hi
    first, last = hi, lo  # the span of accepted timestamps; none accepted: no span
    add_num, add_other = batch.add_num, batch.add_other
    body, pack_row, fast = batch.bodies[0], NUM_ROW.pack, 0
    has_field = PbMetric.HasField
    for m, target in zip(pb.metrics, targets, strict=True):
        if target is None:
            problems.unknown(m.name or f"alias {m.alias}")
            continue
        _, dt, kind, flags, prefix = target
        ts = m.timestamp or default_ts
        if ts < lo or ts > hi:
            problems.add("absurd_timestamp", f"timestamp {ts} ms")
            continue
        ordinal = 0
        if has_field(m, "properties"):
            try:
                ordinal = ordinal_of(m)
            except ValueProblem as exc:
                problems.add(exc.reason, str(exc))
                continue
        if ts < first:
            first = ts
        if ts > last:
            last = ts
        if not flags and (dt is _DOUBLE or dt is _FLOAT):
            value = m.double_value if dt is _DOUBLE else m.float_value
            # set, not 0.0 and finite: the common case, straight into the COPY rows
            if value and value - value == 0.0:
                body += pack_row(prefix, (ts - PG_EPOCH_MS) * 1000 + ordinal, 8, value)
                fast += 1
                continue
        elif flags & TRANSIENT:
            continue
        try:
            value = metric_value(m, dt)
        except ValueProblem as exc:
            problems.add(exc.reason, str(exc))
            continue
        if kind == NUM and not flags:
            add_num(prefix, ts, value, ordinal)  # type: ignore[arg-type]
        else:
            add_other(target, ts, value, ordinal)
    batch.counts[NUM] += fast
    if first <= last:
        batch.spans.append((gen.birth_id, first, last))
    return True
