"""The ordinal of each value of a device's metric within its millisecond (``plantwire.ordinal``).

The platform stores the n-th value of a metric within one millisecond n microseconds after
it, one value per (metric, millisecond, ordinal): a different value at a place already taken
is refused as a ``conflicting_value`` dead letter, the same value again is a repeat. So a
value is numbered after every value its metric had at its millisecond, not only when it
repeats the metric's last millisecond: a metric's values come back to a millisecond it left
(a device clock set back, a value delivered again after a lost OPC UA session, one stamped
by the gateway among values stamped by a device whose line runs behind the gateway's clock,
a merged state changed late at an earlier instant, the gateway's own clock stepped back).
Each metric remembers the values of the last :data:`MEMORY` milliseconds it used; a value
equal to one there goes out at that one's place (delivered again: a repeat the platform
absorbs, not a second copy), any other at the next free ordinal. The last one numbered is the
metric's current value (:meth:`Ordinals.current`: a birth carries it, at its place).
"""

from __future__ import annotations

import itertools
from collections.abc import KeysView
from typing import Any

from plantwire_edge.buffer import Sample

MEMORY = 16
"""Milliseconds remembered per metric, at least (the most recently used; up to twice as many):
a value that comes back to a millisecond further back than that is numbered 0, as if it were
the first there."""


class Ordinals:
    """The numbering of one device's values (see the module docstring)."""

    __slots__ = ("_ordinal", "_recent")

    def __init__(self) -> None:
        # by key: the values of each recent millisecond, by ordinal (a value alone as itself,
        # several as a list: values are scalars), the one used last last
        self._recent: dict[int, dict[int, Any]] = {}
        self._ordinal: dict[int, int] = {}  # by key: its last value's ordinal, where not 0

    def number(self, samples: list[Sample], start: int = 0) -> None:
        """Number ``samples[start:]`` in place (a value with an ordinal gets it as its fourth
        element); the last of each key is its current value."""
        recent, ordinal, limit = self._recent, self._ordinal, 2 * MEMORY
        for i in range(start, len(samples)):
            sample = samples[i]
            key, value, ts = sample[0], sample[1], sample[2]
            seen = recent.get(key)
            if seen is None:
                seen = recent[key] = {}
            elif ts in seen:
                n = self._again(seen, key, value, ts)
                if n:
                    samples[i] = (key, value, ts, n)  # beyond MAX_ORDINAL: a dead letter
                continue
            seen[ts] = value  # a millisecond new to this key: the usual case
            if len(seen) >= limit:  # the older half forgotten at once (cheaper)
                recent[key] = dict(itertools.islice(seen.items(), MEMORY, None))
            if ordinal:
                ordinal.pop(key, None)

    def _again(self, seen: dict[int, Any], key: int, value: Any, ts: int) -> int:
        """The ordinal of ``value`` at ``ts``, a millisecond ``key`` used lately."""
        last = next(reversed(seen)) == ts
        held = seen.pop(ts)  # back in last: the most recently used
        values = held if isinstance(held, list) else [held]
        if last:  # its last value's millisecond: a burst, or one delivered again in order
            n = self._ordinal.get(key, 0)
            if n + 1 < len(values) and values[n + 1] == value:
                n += 1  # the next of a burst delivered again
            elif values[n] != value:  # (the same again in a row: a repeat)
                n = len(values)  # a change, to a value it held before too
                values.append(value)
        else:  # back to it: the place of the same value there, else the next free one
            n = next((j for j, v in enumerate(values) if v == value), len(values))
            if n == len(values):
                values.append(value)
        seen[ts] = values if len(values) > 1 else held
        if n:
            self._ordinal[key] = n
        else:
            self._ordinal.pop(key, None)
        return n

    def current(self, key: int) -> tuple[Any, int, int] | None:
        """``key``'s last value numbered: (value, millisecond, ordinal), None before its first
        (a value equal to one its place held already is that one: the value stored there)."""
        seen = self._recent.get(key)
        if not seen:
            return None
        ts = next(reversed(seen))  # the millisecond used last
        held, n = seen[ts], self._ordinal.get(key, 0)
        return held[n] if isinstance(held, list) else held, ts, n

    def current_keys(self) -> KeysView[int]:
        """The keys with a current value (a live view)."""
        return self._recent.keys()
