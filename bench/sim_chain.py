"""The ``chain`` scenario on this machine: start-up, change rate, CPU and lag, accelerated.

    .venv/bin/python bench/sim_chain.py [--speed 60] [--seconds 20]

Starts Mosquitto (from PATH) for the MQTT devices, then runs the whole chain scenario (OPC UA
per site, every Modbus server, every MQTT device) twice from the same simulated start (a
Monday morning, inside the shifts): at real time (the baseline) and at ``--speed``. Prints
start-up time, changes per second the simulators write, CPU of the process, the scheduler's
worst lag behind simulated time and the process's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from plantwire_bus.mosquitto import start_mosquitto
from plantwire_sim.clock import parse_start
from plantwire_sim.factory import run_factory
from plantwire_sim.scenario import load_scenario
from plantwire_sim.truth import TruthRecorder

START = parse_start("2025-03-03T09:00:00+08:00")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(mqtt_url: str, speed: float, seconds: float) -> str:
    scenario = load_scenario("chain")
    truth = TruthRecorder(keep=False)
    async with run_factory(
        scenario,
        truth=truth,
        mqtt_url=mqtt_url,
        speed=speed,
        start_ms=START,
        topic_prefix=f"bench{speed:g}",
    ) as factory:
        await asyncio.sleep(2)
        factory.lag_s = 0.0
        n0, c0, w0 = truth.count, cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - w0
        rate = (truth.count - n0) / wall
        return (
            f"speed {speed:5g}x: {len(factory.players)} machines ({len(factory.hosts)} OPC "
            f"UA servers, {len(factory.modbus)} Modbus, {len(factory.mqtt_topics)} MQTT) "
            f"up in {factory.startup_s:.1f} s; {rate:7.0f} changes/s, CPU "
            f"{100 * (cpu() - c0) / wall:5.1f} %, worst lag {factory.lag_s:.3f} s"
        )


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_mosquitto(Path(tmp))
        try:
            print("baseline", await measure(broker.url, 1.0, args.seconds))
            print("        ", await measure(broker.url, args.speed, args.seconds))
        finally:
            broker.stop()
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
