"""Modbus register maps: typed decoding of register words and planning of batched reads.

Pure functions, no I/O. A 32-bit value spans two registers; ``word_order = "big"`` means
the first register holds the high word, ``byte_order = "big"`` means the high byte comes
first within each register (the Modbus default). Reads are planned per table: registers
close enough together (gap at most ``max_gap``) are read in one request of at most 125
registers (2000 coils or discrete inputs).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
Table = Literal["holding", "input", "coil", "discrete"]
Order = Literal["big", "little"]

WIDTH: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "bool": 1,
}
BIT_TABLES = ("coil", "discrete")
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
_F32 = struct.Struct(">f")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a value lives and how its words are laid out."""

    table: Table
    address: int
    type: RegisterType = "uint16"
    word_order: Order = "big"
    byte_order: Order = "big"
    bit: int | None = None

    @property
    def width(self) -> int:
        return 1 if self.table in BIT_TABLES else WIDTH[self.type]


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def decode(layout: Layout, words: Sequence[int | bool]) -> int | float | bool:
    """The value of ``layout`` from its ``words`` (registers, or one bit for coil tables)."""
    if layout.table in BIT_TABLES:
        return bool(words[0])
    regs = [int(w) & 0xFFFF for w in words[: layout.width]]
    if len(regs) < layout.width:
        raise ValueError(f"{layout.type} needs {layout.width} registers, got {len(regs)}")
    if layout.byte_order == "little":
        regs = [_swap(r) for r in regs]
    if layout.width == 1:
        word = regs[0]
        if layout.bit is not None:
            return bool((word >> layout.bit) & 1)
        if layout.type == "int16":
            return word - 0x10000 if word & 0x8000 else word
        if layout.type == "bool":
            return word != 0
        return word
    high, low = (regs[0], regs[1]) if layout.word_order == "big" else (regs[1], regs[0])
    number = (high << 16) | low
    if layout.type == "uint32":
        return number
    if layout.type == "int32":
        return number - 0x1_0000_0000 if number & 0x8000_0000 else number
    value: float = _F32.unpack(number.to_bytes(4, "big"))[0]
    return value


def encode(layout: Layout, value: int | float | bool) -> list[int]:
    """The register words holding ``value`` (the inverse of :func:`decode`; for tests and
    simulators)."""
    if layout.table in BIT_TABLES:
        return [int(bool(value))]
    if layout.width == 1:
        word = int(value) & 0xFFFF
        regs = [word]
    else:
        if layout.type == "float32":
            number = int.from_bytes(_F32.pack(float(value)), "big")
        else:
            number = int(value) & 0xFFFF_FFFF
        high, low = number >> 16, number & 0xFFFF
        regs = [high, low] if layout.word_order == "big" else [low, high]
    if layout.byte_order == "little":
        regs = [_swap(r) for r in regs]
    return regs


@dataclass(frozen=True, slots=True)
class Read:
    """One read request and the values it carries: (index into the map, offset in block)."""

    table: Table
    address: int
    count: int
    members: tuple[tuple[int, int], ...]


def plan_reads(layouts: Sequence[Layout], max_gap: int = 8) -> list[Read]:
    """Batch ``layouts`` into as few reads as the Modbus limits allow, per table."""
    reads: list[Read] = []
    for table in ("holding", "input", "coil", "discrete"):
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else MAX_REGISTERS_PER_READ
        items = sorted(
            (lay.address, i, lay.width) for i, lay in enumerate(layouts) if lay.table == table
        )
        start = end = -1
        members: list[tuple[int, int]] = []
        for address, index, width in items:
            last = address + width
            if members and address - end <= max_gap and max(end, last) - start <= limit:
                end = max(end, last)
            else:
                if members:
                    reads.append(Read(table, start, end - start, tuple(members)))
                start, end, members = address, last, []
            members.append((index, address - start))
        if members:
            reads.append(Read(table, start, end - start, tuple(members)))
    return reads
