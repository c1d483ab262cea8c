"""Native device values to Sparkplug values: datatype conversion with range checks, and the
sanity check of device clocks.

A converter is compiled once per tag; it returns the value to publish or raises
:class:`Rejected` when the native value cannot be represented in the tag's datatype (the
adapter counts and logs it; nothing is published). Tags with a mapping table publish the
canonical state string of their table.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from plantwire_bus.payload import DataType
from plantwire_edge.mapping import StateTable

Scalar = int | float | bool | str
Convert = Callable[[object], Scalar | None]

MIN_SANE_TS_MS = 946_771_200_000  # 2000-01-02T00:00:00Z: a PLC clock reset to 2000 is caught
_F32 = struct.Struct("<f")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

INT_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.Int8: (-(2**7), 2**7 - 1),
    DataType.Int16: (-(2**15), 2**15 - 1),
    DataType.Int32: (-(2**31), 2**31 - 1),
    DataType.Int64: (-(2**63), 2**63 - 1),
    DataType.UInt8: (0, 2**8 - 1),
    DataType.UInt16: (0, 2**16 - 1),
    DataType.UInt32: (0, 2**32 - 1),
    DataType.UInt64: (0, 2**64 - 1),
    DataType.DateTime: (0, 2**64 - 1),
}
TEXT = frozenset({DataType.String, DataType.Text, DataType.UUID})
PUBLISHABLE = frozenset({*INT_RANGES, DataType.Float, DataType.Double, DataType.Boolean, *TEXT})


class Rejected(ValueError):
    """A native value that cannot be published as its tag's datatype."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _integer(datatype: DataType) -> Convert:
    low, high = INT_RANGES[datatype]

    def convert(native: object) -> int | None:
        if native is None:
            return None
        if type(native) is int:
            number = native
        elif isinstance(native, int) or (isinstance(native, float) and native.is_integer()):
            number = int(native)  # bools and int subclasses too
        else:
            raise Rejected(f"{native!r} is not an integer")
        if not low <= number <= high:
            raise Rejected(f"{number} does not fit {datatype.name}")
        return number

    return convert


def _double(native: object) -> float | None:
    if type(native) is float:
        return native
    if native is None:
        return None
    if isinstance(native, int | float) and not isinstance(native, bool):
        try:
            return float(native)
        except OverflowError:
            raise Rejected(f"{native!r} does not fit Double") from None
    raise Rejected(f"{native!r} is not a number")


def _float(native: object) -> float | None:
    value = _double(native)
    if value is not None and math.isfinite(value):
        try:
            _F32.pack(value)
        except OverflowError:
            raise Rejected(f"{value!r} does not fit Float") from None
    return value


def _boolean(native: object) -> bool | None:
    if native is None or isinstance(native, bool):
        return native
    if isinstance(native, int | float) and native in (0, 1):
        return bool(native)
    raise Rejected(f"{native!r} is not a boolean")


def _text(native: object) -> str | None:
    if native is None or isinstance(native, str):
        return native
    if isinstance(native, bytes):
        try:
            return native.decode()
        except UnicodeDecodeError:
            raise Rejected("bytes are not UTF-8 text") from None
    return str(native)


def converter(datatype: DataType, table: StateTable | None = None) -> Convert:
    """A function turning a native value into the value published for ``datatype``.

    With a mapping ``table`` the result is the canonical state string; a native value the
    table does not know becomes the table's fallback (``UNKNOWN`` / ``NO_DATA``).
    """
    if table is not None:
        translate = table.translate

        def mapped(native: object) -> str:
            return translate(native)[0]

        return mapped
    if datatype is DataType.DateTime:
        integer = _integer(datatype)

        def epoch_ms(native: object) -> Scalar | None:
            if isinstance(native, datetime):
                aware = native if native.tzinfo else native.replace(tzinfo=UTC)
                return integer((aware - _EPOCH) // _MS)
            return integer(native)

        return epoch_ms
    if datatype in INT_RANGES:
        return _integer(datatype)
    if datatype is DataType.Double:
        return _double
    if datatype is DataType.Float:
        return _float
    if datatype is DataType.Boolean:
        return _boolean
    if datatype in TEXT:
        return _text
    raise ValueError(f"datatype {datatype.name} cannot be published")


@dataclass(frozen=True, slots=True)
class ClockCheck:
    """Which device timestamps are believable: not before 2000-01-02, not older than
    ``max_age_ms`` and not more than ``max_future_ms`` ahead of the gateway's clock."""

    max_future_ms: int = 300_000
    max_age_ms: int = 365 * 86_400_000

    def bounds(self, now: int) -> tuple[int, int]:
        """The lowest and highest sane timestamp at gateway time ``now``."""
        return max(MIN_SANE_TS_MS, now - self.max_age_ms), now + self.max_future_ms

    def sane(self, ts_ms: int, now: int) -> bool:
        low, high = self.bounds(now)
        return low <= ts_ms <= high
