"""Native encodings: Modbus register layouts, JSON paths, fault distortions (pure logic)."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from plantwire_sim.faults import CLOCK_RESET_MS, ActiveFaults
from plantwire_sim.legacy import TAGS, RegisterImage, encode, float32
from plantwire_sim.mqtt_device import iso_ms, place
from plantwire_sim.native import TagSpec

SPEC = {t.name: t for t in TAGS}


@pytest.mark.parametrize(
    ("tag", "value", "word_order", "byte_order", "registers"),
    [
        ("ModeWord", 1, "big", "big", [0x0001]),
        ("ModeWord", 1, "big", "little", [0x0100]),
        ("Temperature", -125, "big", "big", [0xFF83]),  # int16 two's complement, -12.5 degC
        ("PartCounter", 0x12345678, "big", "big", [0x1234, 0x5678]),
        ("PartCounter", 0x12345678, "little", "big", [0x5678, 0x1234]),
        ("PartCounter", 0x12345678, "little", "little", [0x7856, 0x3412]),
        ("PartCounter", 2**32 + 5, "big", "big", [0, 5]),  # the counter wraps
        ("PowerActive", 1.5, "big", "big", [0x3FC0, 0x0000]),
        ("PowerActive", 1.5, "little", "big", [0x0000, 0x3FC0]),
        ("PowerActive", 1.5, "big", "little", [0xC03F, 0x0000]),
    ],
)
def test_register_encoding(
    tag: str, value: Any, word_order: str, byte_order: str, registers: list[int]
) -> None:
    assert encode(SPEC[tag], value, word_order, byte_order) == registers


def decode_float(hi: int, lo: int) -> float:
    """An independent reading: big-endian IEEE 754 from two registers, high word first."""
    return float(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])


@pytest.mark.parametrize("value", [0.1, 5.5, 1234.5678, -3.25, 3.0e38])
def test_float32_values_are_exactly_what_the_registers_hold(value: float) -> None:
    hi, lo = encode(SPEC["PowerActive"], float32(value), "big", "big")
    assert decode_float(hi, lo) == float32(value)
    assert float32(float32(value)) == float32(value)


def test_register_image_packs_bits_lsb_first() -> None:
    image = RegisterImage("big", "big")
    image.set(SPEC["RunBit"], True)  # discrete 0
    image.set(SPEC["AlarmBit"], True)  # discrete 1
    image.set(SPEC["AlarmBit"], False)
    image.set(SPEC["RemoteEnable"], True)  # coil 0
    image.set(SPEC["PartCounter"], 70_000)
    assert image.tables["discrete"][0] == 0b01
    assert image.tables["coil"][0] == 0b1
    assert image.tables["holding"][10:12] == [1, 70_000 - 65_536]


def test_register_map_has_no_overlaps() -> None:
    used: dict[tuple[str, int], str] = {}
    for t in TAGS:
        width = 2 if t.type in ("uint32", "int32", "float32") else 1
        for a in range(t.address, t.address + width):
            assert (t.table, a) not in used, (t.name, used.get((t.table, a)))
            used[(t.table, a)] = t.name


@pytest.mark.parametrize(
    ("paths", "doc"),
    [
        ({"a": 1}, {"a": 1}),
        ({"power.kw": 2.5, "power.kvar": 1.0}, {"power": {"kw": 2.5, "kvar": 1.0}}),
        ({"phases[1].v": 230.0, "phases[0].v": 229.0}, {"phases": [{"v": 229.0}, {"v": 230.0}]}),
        ({"m[0][1]": True}, {"m": [[None, True]]}),
    ],
)
def test_json_paths_place_values(paths: dict[str, Any], doc: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    for path, value in paths.items():
        place(out, path, value)
    assert out == doc


def test_iso_timestamps_have_milliseconds_and_z() -> None:
    assert iso_ms(1_741_000_000_250) == "2025-03-03T11:06:40.250Z"


ANALOG = TagSpec("Speed", float, "Spindle/Speed", "Double", analog=True, absurd=1e9)
COUNTER = TagSpec("Count", int, "Production/PartCount", "UInt32")
RAW = TagSpec("Raw", int, "Motor/Speed", "UInt16", analog=True, absurd=65535)


@pytest.mark.parametrize(
    ("active", "spec", "value", "shown"),
    [
        ((), ANALOG, 5.0, 5.0),
        (("nan",), ANALOG, 5.0, math.nan),
        (("nan",), RAW, 7, 7),  # integer registers have no NaN
        (("nan",), COUNTER, 3, 3),
        (("out_of_range",), ANALOG, 5.0, 1e9),
        (("out_of_range",), RAW, 7, 65535),
        (("out_of_range",), COUNTER, 3, 3),
    ],
)
def test_distortions(active: tuple[str, ...], spec: TagSpec, value: Any, shown: Any) -> None:
    faults = ActiveFaults()
    for kind in active:
        faults.begin(kind, 0)
    out = faults.distort(spec, value)
    if isinstance(shown, float) and math.isnan(shown):
        assert isinstance(out, float) and math.isnan(out)
    else:
        assert out == shown


def test_clock_jump_restarts_source_time_at_2000() -> None:
    faults = ActiveFaults()
    assert faults.timestamp(1_741_000_000_000) == 1_741_000_000_000
    assert faults.begin("clock_jump", 1_741_000_000_000)
    assert not faults.begin("clock_jump", 1_741_000_005_000)  # overlapping: still the first
    assert faults.timestamp(1_741_000_010_000) == CLOCK_RESET_MS + 10_000
    assert not faults.end("clock_jump")
    assert faults.end("clock_jump")
    assert faults.timestamp(1_741_000_020_000) == 1_741_000_020_000
