"""Value conversion to Sparkplug datatypes and the device clock check, case by case."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plantwire_bus.payload import DataType
from plantwire_edge.mapping import table
from plantwire_edge.values import MIN_SANE_TS_MS, ClockCheck, Rejected, converter


@pytest.mark.parametrize(
    ("datatype", "native", "expected"),
    [
        (DataType.Double, 1.5, 1.5),
        (DataType.Double, 3, 3.0),
        (DataType.Double, None, None),
        (DataType.Float, 2.25, 2.25),
        (DataType.Int8, -128, -128),
        (DataType.Int16, 32767, 32767),
        (DataType.Int32, 7.0, 7),
        (DataType.Int64, -(2**63), -(2**63)),
        (DataType.UInt8, 255, 255),
        (DataType.UInt32, 4_294_967_295, 4_294_967_295),
        (DataType.UInt64, 2**64 - 1, 2**64 - 1),
        (DataType.UInt16, True, 1),
        (DataType.Boolean, True, True),
        (DataType.Boolean, 0, False),
        (DataType.Boolean, 1.0, True),
        (DataType.String, "AUTO", "AUTO"),
        (DataType.String, 42, "42"),
        (DataType.Text, b"caf\xc3\xa9", "café"),
        (DataType.DateTime, 1_767_225_600_123, 1_767_225_600_123),
        (DataType.DateTime, datetime(2026, 1, 1, 0, 0, 0, 123_000, UTC), 1_767_225_600_123),
        (DataType.DateTime, datetime(2026, 1, 1, 0, 0, 1), 1_767_225_601_000),  # naive: UTC
    ],
)
def test_converts(datatype: DataType, native: object, expected: object) -> None:
    result = converter(datatype)(native)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("datatype", "native", "message"),
    [
        (DataType.Int8, 128, "does not fit Int8"),
        (DataType.UInt32, -1, "does not fit UInt32"),
        (DataType.UInt16, 65536, "does not fit UInt16"),
        (DataType.Int32, 1.5, "is not an integer"),
        (DataType.Int32, "7", "is not an integer"),
        (DataType.Double, "x", "is not a number"),
        (DataType.Double, True, "is not a number"),
        (DataType.Float, 1e300, "does not fit Float"),
        (DataType.Boolean, 2, "is not a boolean"),
        (DataType.Boolean, "yes", "is not a boolean"),
        (DataType.String, b"\xff", "not UTF-8"),
    ],
)
def test_rejects(datatype: DataType, native: object, message: str) -> None:
    with pytest.raises(Rejected, match=message):
        converter(datatype)(native)


def test_mapped_values_become_canonical_strings() -> None:
    convert = converter(DataType.String, table("plantwire/ModeCode"))
    assert [convert(v) for v in (0, 1, 4, 9, None)] == [
        "MANUAL",
        "AUTO",
        "MDI",
        "UNKNOWN",
        "UNKNOWN",
    ]


@pytest.mark.parametrize(
    ("ts_ms", "sane"),
    [
        (1_767_225_600_000, True),  # now
        (1_767_225_600_000 - 300 * 86_400_000, True),  # 300 days old
        (1_767_225_600_000 - 400 * 86_400_000, False),  # older than a year
        (1_767_225_600_000 + 299_000, True),  # within the future tolerance
        (1_767_225_600_000 + 301_000, False),  # ahead of the gateway
        (946_684_800_000, False),  # 2000-01-01: a PLC with a reset clock
        (MIN_SANE_TS_MS - 1, False),
    ],
)
def test_clock_check(ts_ms: int, sane: bool) -> None:
    assert ClockCheck().sane(ts_ms, now=1_767_225_600_000) is sane


def test_clock_check_never_accepts_year_2000_even_with_a_long_age() -> None:
    check = ClockCheck(max_age_ms=100 * 365 * 86_400_000)
    assert not check.sane(946_684_800_000, now=1_767_225_600_000)
