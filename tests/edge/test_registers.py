"""Modbus register decoding and read planning, against hand-computed words."""

from __future__ import annotations

import struct

import pytest

from plantwire_edge.registers import Layout, Read, decode, encode, plan_reads


def f32_words(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]


@pytest.mark.parametrize(
    ("layout", "words", "expected"),
    [
        (Layout("holding", 0, "uint16"), [0xFFFF], 65535),
        (Layout("holding", 0, "int16"), [0xFFFF], -1),
        (Layout("holding", 0, "int16"), [0x8000], -32768),
        (Layout("holding", 0, "uint16", byte_order="little"), [0x3412], 0x1234),
        (Layout("input", 0, "uint32"), [0x0001, 0x0002], 0x0001_0002),
        (Layout("input", 0, "uint32", word_order="little"), [0x0002, 0x0001], 0x0001_0002),
        (Layout("input", 0, "int32"), [0xFFFF, 0xFFFE], -2),
        (
            Layout("input", 0, "int32", word_order="little", byte_order="little"),
            [0xFEFF, 0xFFFF],
            -2,
        ),
        (Layout("holding", 0, "float32"), f32_words(1234.5), 1234.5),
        (Layout("holding", 0, "float32", word_order="little"), f32_words(-0.25)[::-1], -0.25),
        (Layout("holding", 0, "uint16", bit=0), [0b1010], False),
        (Layout("holding", 0, "uint16", bit=3), [0b1010], True),
        (Layout("holding", 0, "uint16", bit=15), [0x8000], True),
        (Layout("holding", 0, "bool", bit=1), [0b10], True),
        (Layout("coil", 0, "bool"), [True], True),
        (Layout("discrete", 0, "bool"), [False], False),
    ],
)
def test_decode(layout: Layout, words: list[int], expected: object) -> None:
    assert decode(layout, words) == expected


@pytest.mark.parametrize(
    ("layout", "value"),
    [
        (Layout("holding", 0, "int16"), -1234),
        (Layout("holding", 0, "uint32", word_order="little", byte_order="little"), 3_000_000_000),
        (Layout("holding", 0, "int32", word_order="little"), -70_000),
        (Layout("holding", 0, "float32", byte_order="little"), 2.5),
    ],
)
def test_encode_inverts_decode(layout: Layout, value: float) -> None:
    assert decode(layout, encode(layout, value)) == value


def test_too_few_words_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode(Layout("holding", 0, "uint32"), [1])


def test_reads_are_batched_per_table_within_gap_and_limits() -> None:
    layouts = [
        Layout("holding", 10, "uint32"),  # 10-11
        Layout("holding", 12, "int16"),  # 12
        Layout("holding", 20, "float32"),  # 20-21: gap of 8 from 12 (end 13 -> 20 is 7)
        Layout("holding", 40, "uint16"),  # gap 18: new read
        Layout("input", 0, "uint16"),
        Layout("coil", 5, "bool"),
        Layout("coil", 7, "bool"),
        Layout("holding", 12, "uint16", bit=3),  # same register as index 1
    ]
    assert plan_reads(layouts, max_gap=8) == [
        Read("holding", 10, 12, ((0, 0), (1, 2), (7, 2), (2, 10))),
        Read("holding", 40, 1, ((3, 0),)),
        Read("input", 0, 1, ((4, 0),)),
        Read("coil", 5, 3, ((5, 0), (6, 2))),
    ]


def test_reads_respect_the_register_limit() -> None:
    layouts = [Layout("holding", a, "uint16") for a in range(0, 300)]
    reads = plan_reads(layouts, max_gap=0)
    assert [(r.address, r.count) for r in reads] == [(0, 125), (125, 125), (250, 50)]
    assert sum(len(r.members) for r in reads) == 300
