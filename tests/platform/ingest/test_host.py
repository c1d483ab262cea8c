"""The Sparkplug host's pure logic: topics, births, alias resolution and the COPY rows it
builds. Rows are read back with an independent parser of PostgreSQL's binary COPY format."""

from __future__ import annotations

import struct
import time

import pytest

from plantwire_bus.payload import DataType, Metric, Payload, PayloadError, encode_payload
from plantwire_bus.topics import MessageType
from plantwire_platform.ingest.batch import BOOL, NUM, TEXT, Batch, Problems, Target, row_prefix
from plantwire_platform.ingest.host import (
    EVENT,
    STATE,
    TRANSIENT,
    AliasBook,
    Generation,
    Route,
    TimeWindow,
    classify,
    decode_data,
    flags_for,
    parse_data,
    read_birth,
    read_death,
)

NOW = time.time_ns() // 1_000_000
WINDOW = TimeWindow.around(NOW)
PG_EPOCH_MS = 946_684_800_000


def copy_rows(data: bytes) -> list[tuple[int, int, bytes | None]]:
    """(series id, ts in ms, raw value) of each row of a binary COPY stream."""
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
    pos = 19
    rows: list[tuple[int, int, bytes | None]] = []
    while True:
        (fields,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if fields == -1:
            return rows
        values: list[bytes | None] = []
        for _ in range(fields):
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            values.append(None if length < 0 else data[pos : pos + length])
            pos += max(length, 0)
        sid, ts, value = values
        assert sid is not None and ts is not None
        micros = struct.unpack(">q", ts)[0]
        rows.append((struct.unpack(">q", sid)[0], micros // 1000 + PG_EPOCH_MS, value))


def as_double(raw: bytes | None) -> float | None:
    return None if raw is None else struct.unpack(">d", raw)[0]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/G/DDATA/N/D", Route(MessageType.DDATA, "G", "N", "D")),
        ("spBv1.0/G/NBIRTH/N", Route(MessageType.NBIRTH, "G", "N", "")),
        ("spBv1.0/STATE/host", None),
        ("spBv1.0/G/NCMD/N", None),
        ("spBv1.0/G/DCMD/N/D", None),
        ("spBv1.0/G/DDATA/N", "DDATA needs a device id"),
        ("spBv1.0/G/NDATA/N/D", "NDATA must not have a device id"),
        ("spBv1.0/G/XDATA/N", "unknown message type 'XDATA'"),
        ("spBv1.0/G/DDATA", "3 topic elements, need 4 or 5"),
        ("spBv1.0/G/DDATA/N/D/extra", "6 topic elements, need 4 or 5"),
        ("spBv1.0//DDATA/N/D", "bad topic element ''"),
        ("other/G/DDATA/N/D", "not in the spBv1.0 namespace"),
    ],
)
def test_classify(topic: str, expected: Route | str | None) -> None:
    assert classify(topic) == expected


@pytest.mark.parametrize(
    ("name", "transient", "flags"),
    [
        ("State/Mode", False, STATE),
        ("State/Execution", False, STATE),
        ("Alarms/Overheat", False, EVENT),
        ("events/ToolChange", False, EVENT),
        ("Spindle/Speed", True, TRANSIENT),
        ("Spindle/Speed", False, 0),
    ],
)
def test_flags(name: str, transient: bool, flags: int) -> None:
    assert flags_for(name, transient) == flags


def test_birth_keeps_telemetry_and_reports_bad_metrics() -> None:
    route = Route(MessageType.NBIRTH, "G", "N", "")
    payload = Payload(
        timestamp=NOW,
        seq=0,
        metrics=(
            Metric(name="bdSeq", datatype=DataType.UInt64, value=7),
            Metric(name="Node Control/Rebirth", datatype=DataType.Boolean, value=False),
            Metric(name="Temp", alias=1, datatype=DataType.Double, value=20.5),
            Metric(name="Temp", alias=2, datatype=DataType.Double, value=1.0),  # repeated
            Metric(name="Raw", alias=3, datatype=DataType.Bytes, value=b"x"),  # unsupported
            Metric(name="Bad\0name", alias=4, datatype=DataType.Double, value=1.0),
            Metric(alias=5, datatype=DataType.Double, value=1.0),  # no name
        ),
    )
    birth = read_birth(route, payload, NOW + 5)
    assert (birth.ts, birth.seq, birth.bd_seq) == (NOW, 0, 7)
    assert [m.name for m in birth.metrics] == ["Temp"]
    assert len(birth.problems) == 4


def test_death_time_and_bdseq() -> None:
    route = Route(MessageType.NDEATH, "G", "N", "")
    will = Payload(
        timestamp=NOW - 60_000, metrics=(Metric(name="bdSeq", datatype=DataType.UInt64, value=3),)
    )
    death = read_death(route, will, NOW)
    assert (death.ts, death.bd_seq) == (NOW, 3)  # a Will carries its connect time: arrival
    device = Route(MessageType.DDEATH, "G", "N", "D")
    assert read_death(device, Payload(timestamp=NOW - 5, seq=9), NOW).ts == NOW - 5


def target(sid: int, datatype: DataType, name: str = "m") -> Target:
    kind = {DataType.Boolean: BOOL, DataType.String: TEXT}.get(datatype, NUM)
    return Target(sid, datatype, kind, flags_for(name), row_prefix(sid))


def generation(*targets: tuple[int, str, Target], birth_ts: int = NOW - 1000) -> Generation:
    return Generation(
        birth_id=1,
        birth_ts=birth_ts,
        by_alias={alias: t for alias, _, t in targets},
        by_name={name: t for _, name, t in targets},
    )


GEN = generation(
    (1, "Speed", target(10, DataType.Double)),
    (2, "Count", target(11, DataType.UInt32)),
    (3, "Offset", target(12, DataType.Int16)),
    (4, "Running", target(13, DataType.Boolean)),
    (5, "State/Mode", target(14, DataType.String, "State/Mode")),
    (6, "Alarms/Hot", target(15, DataType.Boolean, "Alarms/Hot")),
    (7, "Ratio", target(16, DataType.Float)),
)


def ddata(*metrics: Metric, ts: int | None = NOW, seq: int | None = 5) -> bytes:
    return encode_payload(Payload(timestamp=ts, seq=seq, metrics=metrics), omit_datatypes=True)


def decode(
    data: bytes, gen: Generation = GEN, allow_unknown: bool = True
) -> tuple[Batch, Problems, bool]:
    pb, _, pts = parse_data(data)
    batch, problems = Batch(), Problems()
    ok = decode_data(pb, gen, WINDOW, pts or NOW, batch, problems, allow_unknown)
    return batch, problems, ok


def test_values_of_every_kind_land_in_their_table() -> None:
    batch, problems, ok = decode(
        ddata(
            Metric(alias=1, datatype=DataType.Double, value=2.5, timestamp=NOW - 3),
            Metric(alias=1, datatype=DataType.Double, value=0.0, timestamp=NOW - 2),
            Metric(alias=2, datatype=DataType.UInt32, value=4_000_000_000),
            Metric(alias=3, datatype=DataType.Int16, value=-2),
            Metric(alias=7, datatype=DataType.Float, value=0.5),
            Metric(alias=1, datatype=DataType.Double, is_null=True, timestamp=NOW - 1),
            Metric(alias=4, datatype=DataType.Boolean, value=True),
            Metric(name="State/Mode", datatype=DataType.String, value="AUTO"),  # by name
            Metric(alias=6, datatype=DataType.Boolean, value=False, timestamp=NOW - 9),
        )
    )
    assert ok and not problems
    nums = [(s, t, as_double(v)) for s, t, v in copy_rows(batch.copy_data(NUM))]
    assert nums == [
        (10, NOW - 3, 2.5),
        (10, NOW - 2, 0.0),
        (11, NOW, 4_000_000_000.0),
        (12, NOW, -2.0),
        (16, NOW, 0.5),
        (10, NOW - 1, None),
    ]
    assert copy_rows(batch.copy_data(BOOL)) == [(13, NOW, b"\x01"), (15, NOW - 9, b"\x00")]
    assert copy_rows(batch.copy_data(TEXT)) == [(14, NOW, b"AUTO")]
    assert batch.states == {14: NOW}
    assert batch.events == [(15, (NOW - 9) * 1000, "False")]  # microseconds
    assert batch.spans == [(1, NOW - 9, NOW)]


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        (Metric(alias=1, datatype=DataType.Int64, value=5), "type_mismatch"),  # int for Double
        (Metric(alias=2, datatype=DataType.String, value="7"), "type_mismatch"),
        (Metric(alias=4, datatype=DataType.Int32, value=1), "type_mismatch"),
        (Metric(alias=5, datatype=DataType.Double, value=1.0), "type_mismatch"),
        (Metric(alias=5, datatype=DataType.String, value="A\0B"), "type_mismatch"),
        (
            Metric(alias=1, datatype=DataType.Double, value=1.0, timestamp=946_684_800_000),
            "absurd_timestamp",
        ),
        (
            Metric(alias=1, datatype=DataType.Double, value=1.0, timestamp=NOW + 2 * 86_400_000),
            "absurd_timestamp",
        ),
        (Metric(alias=99, datatype=DataType.Double, value=1.0), "unknown_metric"),
        (Metric(name="Nope", datatype=DataType.Double, value=1.0), "unknown_metric"),
    ],
)
def test_bad_metrics_are_problems_and_the_rest_is_stored(metric: Metric, reason: str) -> None:
    good = Metric(alias=1, datatype=DataType.Double, value=3.0)
    batch, problems, ok = decode(ddata(metric, good))
    assert ok
    assert problems.reason == reason and problems.counts == {reason: 1}
    assert [as_double(v) for _, _, v in copy_rows(batch.copy_data(NUM))] == [3.0]


def test_unknown_metrics_can_refuse_the_whole_message() -> None:
    batch, problems, ok = decode(
        ddata(
            Metric(alias=1, datatype=DataType.Double, value=3.0),
            Metric(alias=42, datatype=DataType.Double, value=1.0),
        ),
        allow_unknown=False,
    )
    assert not ok and batch.samples == 0 and not problems


def test_problems_make_one_dead_letter_detail() -> None:
    _, problems, _ = decode(
        ddata(*(Metric(alias=90 + i, datatype=DataType.Double, value=1.0) for i in range(30)))
    )
    assert problems.counts == {"unknown_metric": 30}
    assert problems.detail().startswith("unknown_metric x30: not in the birth: alias 90, alias 91")


def test_transient_metrics_are_not_stored() -> None:
    t = target(20, DataType.Double)
    gen = generation((1, "Tmp", t._replace(flags=TRANSIENT)))
    batch, problems, ok = decode(ddata(Metric(alias=1, datatype=DataType.Double, value=1.0)), gen)
    assert ok and not problems and batch.samples == 0


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\x00garbage",
        encode_payload(
            Payload(seq=5, metrics=(Metric(alias=1, datatype=DataType.Double, value=1.5),))
        )[:-3],
    ],
)
def test_undecodable_payloads(data: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_data(data)


def test_alias_book_picks_the_birth_in_force() -> None:
    book = AliasBook()
    key = ("G", "N", "D")
    old, new = generation(birth_ts=NOW - 100), generation(birth_ts=NOW)
    new.birth_id = 2
    book.add(key, new)
    book.add(key, old)
    assert book.find(key, NOW - 50) is old  # sent before the rebirth
    assert book.find(key, NOW + 5) is new
    assert book.find(key, 0) is new  # no payload timestamp: the newest
    assert book.find(("G", "N", "X"), NOW) is None
    assert book.find(key, NOW - 500) is new  # older than every birth known: the newest


@pytest.mark.parametrize(
    ("spans", "now", "expected"),
    [
        ([(1, NOW - 1000, NOW)], NOW, []),  # fresh
        ([(1, 600_000, 630_000)], 700_000, [(1, 600_000)]),  # late, one minute
        ([(1, 590_000, 700_000)], 700_000, [(1, 540_000), (1, 600_000), (1, 660_000)]),
        ([(2, 600_000, 601_000), (2, 600_500, 600_600)], 700_000, [(2, 600_000)]),
    ],
    ids=["fresh", "one-minute", "three-minutes", "overlapping"],
)
def test_late_marks(
    spans: list[tuple[int, int, int]], now: int, expected: list[tuple[int, int]]
) -> None:
    batch = Batch(spans=spans)
    births, minutes = batch.late_marks(now)
    assert list(zip(births, minutes, strict=True)) == expected
