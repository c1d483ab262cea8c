"""Simulator scale: many OPC UA machines in one process, read by an independent client.

    .venv/bin/python bench/sim_scale.py [--machines 500] [--sensors 12] [--seconds 30]

N CNC machines that cut all the time (8 analog variables + ``--sensors`` condition channels
re-sampled every simulated second: 20 changing variables each by default) are served from ONE
asyncua server (``layout = "fleet"``). A plain asyncua client in a separate process subscribes
to every variable of every machine and counts the data changes it receives.

Measured in the same run:
- baseline: the simulator alone (no subscriber): changes written per second and CPU;
- subscribed: over one window of simulated time, the changes the simulator wrote and the
  changes the client received with a source timestamp in that window (so late deliveries are
  still matched to the second they belong to), CPU of the simulator process and of the client
  process, and the scheduler's worst lag behind simulated time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import textwrap
import time

from plantwire_sim.factory import Factory, run_factory
from plantwire_sim.native import TagValue
from plantwire_sim.scenario import Scenario
from plantwire_sim.truth import TruthRecord, TruthRecorder

CLIENT = textwrap.dedent("""
    import asyncio, json, sys, time
    from asyncua import Client, ua

    url, ns, codes, tags, seconds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), \\
        json.loads(sys.argv[4]), float(sys.argv[5])

    class Count:
        def __init__(self):
            self.per_second = {}
        def datachange_notification(self, node, val, data):
            ts = data.monitored_item.Value.SourceTimestamp.timestamp()
            second = int(ts)
            self.per_second[second] = self.per_second.get(second, 0) + 1

    async def main():
        async with Client(url, timeout=60, watchdog_intervall=30) as client:
            idx = await client.get_namespace_index(ns)
            handler = Count()
            sub = await client.create_subscription(1000, handler)
            nodes = [client.get_node(ua.NodeId(f"{c}.{t}", idx)) for c in codes for t in tags]
            for i in range(0, len(nodes), 1000):
                await sub.subscribe_data_change(nodes[i:i + 1000], queuesize=10)
            print(json.dumps({"subscribed": len(nodes)}), flush=True)
            await asyncio.sleep(5)  # initial values and warm-up
            w0, c0 = time.monotonic(), time.process_time()
            await asyncio.sleep(seconds)
            wall = time.monotonic() - w0
            cpu = 100 * (time.process_time() - c0) / wall
            await asyncio.sleep(5)  # late notifications of the window
            print(json.dumps({"per_second": handler.per_second, "cpu": cpu}), flush=True)

    asyncio.run(main())
""")


def scenario(machines: int, sensors: int) -> Scenario:
    cutting = [{"mode": "AUTO", "execution": "EXECUTING", "seconds": 86_400}]
    return Scenario.model_validate(
        {
            "name": "scale",
            "seed": 1,
            "simulation": {"opcua_layout": "fleet"},
            "enterprises": [
                {
                    "code": "SCALE",
                    "uscc": "91320594MA1MXY3B2K",
                    "name": "Scale Test Works",
                    "sites": [
                        {
                            "code": "S1",
                            "name": "Hall",
                            "edge_node": "GW1",
                            "lines": [{"code": "L1", "name": "Line"}],
                            "machines": [
                                {
                                    "code": "M",
                                    "count": machines,
                                    "name": "Machine",
                                    "line": "L1",
                                    "control_type": "CNC",
                                    "declared_nc": True,
                                    "spindle_rpm": 4000,
                                    "program": cutting,
                                    "params": {"sensors": sensors},
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    )


class CountingTruth(TruthRecorder):
    """Keeps nothing; counts value changes per simulated second."""

    def __init__(self) -> None:
        super().__init__(keep=False)
        self.per_second: dict[int, int] = {}

    def record_value(self, machine: str, tag: str, value: TagValue, ts_ms: int) -> TruthRecord:
        second = ts_ms // 1000
        self.per_second[second] = self.per_second.get(second, 0) + 1
        return super().record_value(machine, tag, value, ts_ms)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def window(factory: Factory, seconds: float) -> tuple[float, float]:
    """(changes written per second, CPU % of this process) over ``seconds``."""
    factory.lag_s = 0.0
    n0, c0, w0 = factory.truth.count, cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - w0
    return (factory.truth.count - n0) / wall, 100 * (cpu() - c0) / wall


async def run(args: argparse.Namespace) -> None:
    scen = scenario(args.machines, args.sensors)
    truth = CountingTruth()
    async with run_factory(
        scen, base_port=0, truth=truth, protocols=frozenset({"opcua"})
    ) as factory:
        host = factory.hosts[0]
        tags = [t.name for t in factory.players["M-001"].endpoint.profile.tags]
        changing = sum(t.analog for t in factory.players["M-001"].endpoint.profile.tags)
        print(
            f"{args.machines} machines x {len(tags)} variables ({changing} changing every "
            f"simulated second) in one asyncua server, started in {factory.startup_s:.1f} s"
        )
        await asyncio.sleep(3)
        base_rate, base_cpu = await window(factory, args.seconds / 2)
        print(
            f"baseline, no subscriber:    {base_rate:8.0f} changes/s written, "
            f"simulator CPU {base_cpu:5.1f} %"
        )
        codes = sorted(factory.players)
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            host.endpoint,
            "urn:plantwire:sim:cnc",
            json.dumps(codes),
            json.dumps(tags),
            str(args.seconds),
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert client.stdout is not None
        subscribed = json.loads(await client.stdout.readline())
        await asyncio.sleep(5)
        first = factory.clock.now_ms() // 1000 + 1
        _, sim_cpu = await window(factory, args.seconds)
        last = factory.clock.now_ms() // 1000 - 1
        result = json.loads(await client.stdout.readline())
        await client.wait()
        received = {int(k): v for k, v in result["per_second"].items()}
        span = range(first, last)
        written_n = sum(truth.per_second.get(s, 0) for s in span)
        received_n = sum(received.get(s, 0) for s in span)
        print(
            f"subscribed to {subscribed['subscribed']} variables, window of {len(span)} "
            "simulated seconds:"
        )
        print(
            f"  written by the simulator  {written_n / len(span):8.0f} changes/s, simulator "
            f"CPU {sim_cpu:5.1f} %"
        )
        print(
            f"  received by the client    {received_n / len(span):8.0f} changes/s, client "
            f"CPU {result['cpu']:5.1f} % ({100 * received_n / written_n:.2f} % of written)"
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"  worst scheduler lag {factory.lag_s:.3f} s; simulator max RSS {rss} MB")
        print(
            f"target: {args.machines * 20} changes/s ({args.machines} machines x 20 tags "
            "at 1 Hz) on 2 cores"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--sensors", type=int, default=12, help="extra changing channels")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
