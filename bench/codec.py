"""Sparkplug B payload codec throughput, with a JSON baseline measured in the same run.

    .venv/bin/python bench/codec.py [--metrics 100] [--seconds 2]

A DDATA-like payload of N aliased Double metrics, each with its own timestamp, is encoded and
decoded repeatedly; the same data as a JSON document (the format plain-MQTT pipelines use)
is the baseline. Prints metrics per second for each and the payload sizes.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from plantwire_bus.payload import DataType, Metric, Payload, decode_payload, encode_payload


def rate(fn: Callable[[], object], per_call: int, seconds: float) -> float:
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        calls += 20
    return calls * per_call / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=100, help="metrics per payload")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    n, t0 = args.metrics, 1_767_225_600_000
    payload = Payload(
        timestamp=t0,
        seq=1,
        metrics=tuple(
            Metric(alias=i % 20 + 1, timestamp=t0 + i, datatype=DataType.Double, value=i * 0.5)
            for i in range(n)
        ),
    )
    data = encode_payload(payload, omit_datatypes=True)
    doc = {
        "timestamp": t0,
        "seq": 1,
        "metrics": [
            {"alias": m.alias, "timestamp": m.timestamp, "value": m.value} for m in payload.metrics
        ],
    }
    text = json.dumps(doc).encode()
    results = {
        "sparkplug encode": rate(
            lambda: encode_payload(payload, omit_datatypes=True), n, args.seconds
        ),
        "sparkplug decode": rate(lambda: decode_payload(data), n, args.seconds),
        "json encode (baseline)": rate(lambda: json.dumps(doc).encode(), n, args.seconds),
        "json decode (baseline)": rate(lambda: json.loads(text), n, args.seconds),
    }
    print(f"payload: {n} metrics; sparkplug {len(data)} bytes, json {len(text)} bytes")
    for name, value in results.items():
        print(f"{name:24s} {value / 1000:10.0f} k metrics/s")


if __name__ == "__main__":
    main()
