"""The gateway's numbering of values within their millisecond (``plantwire.ordinal``): CPU per
value of :meth:`Ordinals.number <plantwire_edge.ordinals.Ordinals.number>`, the node's work on
every value it stores, against the numbering before it (the node's ``_stamp`` up to d8f674c,
which numbered only repeats of a metric's last millisecond), measured in the same run.

    .venv/bin/python bench/ordinals.py [--metrics 100] [--flushes 3000] [--burst 1]

Each flush holds one value of each of ``--metrics`` metrics (``--burst`` values each, at one
millisecond), a new millisecond each flush, as the node numbers them every ``batch_ms``; each
flush is timed alone, both ways in turn, and the median and the lowest over the flushes (the
first tenth left out) are printed: the lowest is what preemption by other work on a busy
machine leaves untouched.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from plantwire_edge.buffer import Sample
from plantwire_edge.ordinals import Ordinals


def before(
    current: dict[int, tuple[Any, int]],
    stamps: dict[int, int],
    ordinals: dict[int, int],
    samples: list[Sample],
) -> None:
    """The numbering up to d8f674c (EdgeNode._stamp), for comparison."""
    for i, sample in enumerate(samples):
        key, value, ts = sample[0], sample[1], sample[2]
        current[key] = (value, ts)
        if stamps.get(key) != ts:
            stamps[key] = ts
            if ordinals:
                ordinals.pop(key, None)
            continue
        n = ordinals[key] = ordinals.get(key, 0) + 1
        samples[i] = (key, value, ts, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=100)
    parser.add_argument("--flushes", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=1)
    args = parser.parse_args()
    old: list[float] = []
    new: list[float] = []
    current_old: dict[int, tuple[Any, int]] = {}
    stamps: dict[int, int] = {}
    counts: dict[int, int] = {}
    ordinals = Ordinals()
    clock = time.perf_counter_ns
    ts = 1_700_000_000_000
    for flush in range(args.flushes):
        ts += 100
        samples: list[Sample] = [
            (key, flush + key / 10_000, ts)
            for key in range(args.metrics)
            for _ in range(args.burst)
        ]
        copy = list(samples)
        start = clock()
        before(current_old, stamps, counts, samples)
        middle = clock()
        ordinals.number(copy)
        end = clock()
        old.append((middle - start) / len(samples))
        new.append((end - middle) / len(samples))
    skip = args.flushes // 10
    for name, times in (("before (d8f674c)", old), ("Ordinals.number", new)):
        print(f"{name:>17}: median {statistics.median(times[skip:]):5.0f} ns a value, "
              f"lowest {min(times[skip:]):5.0f} ns")  # fmt: skip


if __name__ == "__main__":
    main()
