"""Edge gateway throughput, cost per value and buffer replay rate, with a bare asyncua client
measured in the same run as the baseline.

    .venv/bin/python bench/edge_gateway.py [--variables 1000] [--interval-ms 100]
                                           [--publishing-interval-ms 100] [--seconds 20]
                                           [--hold-seconds 20] [--cpu-load 2]

One asyncua server process changes every variable every interval (1,000 x 100 ms = 10,000
value changes/s) and records what it wrote. Then, one after the other:

1. baseline: a bare asyncua client process subscribes to every variable with a handler that
   only counts notifications; its CPU time per notification is measured. Then the same client
   subscribed to one variable only: its CPU per publish response is what asyncua itself costs
   per message before decoding any value, the floor of the gateway's fixed per-second cost
   (one publish response per publishing interval, whatever the number of variables);
2. gateway: ``plantwire edge run`` (durable SQLite buffer, fsync per flush) carries the
   changes to a Mosquitto; a subscriber counts what the broker delivered. Reported: changes
   per second carried, delivered / produced (lost and doubled values), gateway CPU time per
   value delivered (all its threads, from the scheduler's /proc schedstat; the event loop's
   thread apart from the others: the MQTT network thread and the buffer's writer) and the
   threads' wake-ups a second (voluntary context switches);
3. replay: the primary host's STATE goes offline for ``--hold-seconds`` while the machines
   keep producing, so the backlog piles up in the buffer; then it comes back online and the
   time until the backlog is drained (while live values keep arriving) gives the replay rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

BEST_KNOWN_GATEWAY_US = "48 (memory buffer) to 59 (SQLite buffer)"  # quoted by issue #4
URI = "urn:plantwire:bench"
HERE = Path(__file__).resolve()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_time(pid: int) -> tuple[float, float, int, int]:
    """CPU time of a process's threads from the scheduler (/proc schedstat: nanoseconds, where
    /proc stat counts 10 ms ticks), as (event loop thread, all threads) in seconds, and their
    voluntary context switches (each one a wake-up after a wait) likewise."""
    loop_s = total_s = 0.0
    loop_waits = total_waits = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ran = int((task / "schedstat").read_text().split()[0]) / 1e9
            status = (task / "status").read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        waits = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        total_s += ran
        total_waits += waits
        if task.name == str(pid):
            loop_s, loop_waits = ran, waits
    return loop_s, total_s, loop_waits, total_waits


def load() -> str:
    """The machine's load average over 1 minute (other work sharing the cores)."""
    return f"load average {os.getloadavg()[0]:.1f}"


# -- the OPC UA server process ----------------------------------------------------------------
async def serve(port: int, variables: int, interval_ms: int, truth: Path) -> None:
    from asyncua import ua
    from asyncua.server.server import Server

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(URI)
    obj = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("Bench"), ua.Int16(idx)), ua.QualifiedName("Bench", idx)
    )
    ids = []
    for i in range(variables):
        node = await obj.add_variable(
            ua.NodeId(ua.String(f"V{i:04d}"), ua.Int16(idx)),
            ua.QualifiedName(f"V{i:04d}", idx),
            0.0,
        )
        ids.append(node.nodeid)
    await server.start()
    print("ready", flush=True)
    with truth.open("a") as out:
        tick = 0
        due = time.monotonic()
        while True:
            ts = now_ms()
            stamp = cast(ua.DateTime, EPOCH + timedelta(milliseconds=ts))
            for i, nodeid in enumerate(ids):
                dv = ua.DataValue(
                    ua.Variant(tick + i / 10_000, ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                await server.write_attribute_value(nodeid, dv)
            out.write(f"{ts} {len(ids)}\n")
            out.flush()
            tick += 1
            due += interval_ms / 1000
            await asyncio.sleep(max(0.0, due - time.monotonic()))


# -- the bare asyncua client process ----------------------------------------------------------
async def bare(
    endpoint: str, variables: int, interval_ms: int, warmup: float, seconds: float
) -> None:
    """Subscribe to the first ``variables`` variables and count their notifications."""
    from asyncua import ua
    from asyncua.client.client import Client

    class Counter:
        count = 0

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.count += 1

    handler = Counter()
    async with Client(endpoint) as client:
        idx = await client.get_namespace_index(URI)
        nodes = [
            client.get_node(ua.NodeId(ua.String(f"V{i:04d}"), ua.Int16(idx)))
            for i in range(variables)
        ]
        sub = await client.create_subscription(interval_ms, handler)
        await sub.subscribe_data_change(nodes, queuesize=100, sampling_interval=ua.Double(0.0))
        await asyncio.sleep(warmup)
        count0, cpu0, t0, ms0 = handler.count, time.process_time(), time.monotonic(), now_ms()
        await asyncio.sleep(seconds)
        count1, cpu1, t1, ms1 = handler.count, time.process_time(), time.monotonic(), now_ms()
    print(
        json.dumps(
            {
                "notifications": count1 - count0,
                "cpu_s": cpu1 - cpu0,
                "wall_s": t1 - t0,
                "start_ms": ms0,
                "end_ms": ms1,
            }
        ),
        flush=True,
    )


# -- the orchestration ------------------------------------------------------------------------
class Subscriber:
    """Counts every DDATA metric the broker delivers, by (alias, timestamp)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], int] = {}
        self.historical = 0
        self.last_historical_at = 0.0

    def handle(self, data: bytes) -> None:
        from plantwire_bus.sparkplug_b_pb2 import Payload

        payload = Payload.FromString(data)
        seen = self.seen
        historical = 0
        for metric in payload.metrics:
            key = (metric.alias, metric.timestamp)
            seen[key] = seen.get(key, 0) + 1
            historical += metric.is_historical
        if historical:
            self.historical += historical
            self.last_historical_at = time.monotonic()

    def window(self, start: int, end: int) -> tuple[int, int]:
        """Values delivered with start <= ts < end: (total, distinct)."""
        total = distinct = 0
        for (_, ts), n in self.seen.items():
            if start <= ts < end:
                total += n
                distinct += 1
        return total, distinct


async def settle(sub: Subscriber, start: int, end: int, quiet_s: float = 2.0) -> None:
    """Wait until no value of [start, end) arrived for ``quiet_s`` (a loaded server publishes
    late; values still on their way are not lost ones)."""
    last, still = -1, 0.0
    while still < quiet_s:
        await asyncio.sleep(0.5)
        total, _ = sub.window(start, end)
        still = still + 0.5 if total == last else 0.0
        last = total


def produced(truth: Path, start: int, end: int) -> int:
    total = 0
    for line in truth.read_text().splitlines():
        ts, count = line.split()
        if start <= int(ts) < end:
            total += int(count)
    return total


async def health(port: int) -> dict[str, Any]:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return {}
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    body = (await reader.read()).split(b"\r\n\r\n", 1)[1]
    writer.close()
    doc: dict[str, Any] = json.loads(body)
    return doc


async def wait_health(port: int, check: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = await health(port)
        if doc and check(doc):
            return doc
        await asyncio.sleep(0.1)
    raise SystemExit(f"gateway health check failed: {await health(port)}")


async def orchestrate(args: argparse.Namespace) -> None:
    from plantwire_bus.mosquitto import reserve_port, start_mosquitto
    from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
    from plantwire_bus.topics import encode_state, state_topic

    me = str(HERE)
    tmp = Path(tempfile.mkdtemp(prefix="plantwire-bench-edge-"))
    # ports held from the start: one picked free and bound later can be taken meanwhile
    ports = [reserve_port() for _ in range(3)]
    port, http, broker_port = (sock.getsockname()[1] for sock in ports)
    broker = start_mosquitto(tmp / "mosquitto", port=broker_port)
    truth = tmp / "truth.txt"
    endpoint = f"opc.tcp://127.0.0.1:{port}/bench"
    procs: list[asyncio.subprocess.Process] = []
    for _ in range(args.cpu_load):  # CPU-bound neighbours, for the whole run
        procs.append(await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass"))
    print(
        f"{args.variables} variables every {args.interval_ms} ms "
        f"= {args.variables * 1000 // args.interval_ms} value changes/s from one asyncua "
        f"server process; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; "
        f"{args.cpu_load} CPU-bound load processes; {load()} before starting; OPC UA "
        f"publishing interval {args.publishing_interval_ms} ms"
    )
    try:
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            me,
            "serve",
            str(port),
            str(args.variables),
            str(args.interval_ms),
            str(truth),
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(server)
        assert server.stdout is not None
        await server.stdout.readline()

        # 1. baseline
        async def run_bare(subscribed: int) -> dict[str, Any]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                me,
                "bare",
                endpoint,
                str(subscribed),
                str(args.publishing_interval_ms),
                "3",
                str(args.seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
            return result

        baseline = await run_bare(args.variables)
        bare_us = baseline["cpu_s"] / max(1, baseline["notifications"]) * 1e6
        if not baseline["notifications"]:
            print("bare asyncua client: lost its session (asyncua's 1 s watchdog), no figure")
        bare_made = produced(truth, baseline["start_ms"], baseline["end_ms"])
        print(
            f"\nbare asyncua client (baseline): "
            f"{baseline['notifications'] / baseline['wall_s']:,.0f} notifications/s "
            f"(server produced {bare_made / baseline['wall_s']:,.0f}/s), "
            f"{bare_us:.1f} us CPU per notification; {load()}"
        )
        # one variable: a publish response per publishing interval, each with its values
        alone = await run_bare(1)
        changes = max(1, args.publishing_interval_ms // args.interval_ms)  # per response
        responses = max(1, alone["notifications"] // changes)
        per_response_us = alone["cpu_s"] / responses * 1e6
        print(
            f"bare asyncua client, one variable: {per_response_us:,.0f} us CPU per publish "
            f"response ({alone['cpu_s'] / alone['wall_s'] * 1000:.1f} ms CPU/s); the floor's "
            f"fixed part at {args.variables:,} variables: "
            f"{per_response_us / (args.variables * changes):.1f} us per value, before any "
            f"value is decoded; {load()}"
        )

        # 2. gateway
        host = "bench-host"
        config = tmp / "gateway.toml"
        tags = "\n".join(
            f'[[devices.tags]]\nnode = "nsu={URI};s=V{i:04d}"\nmetric = "V{i:04d}"'
            for i in range(args.variables)
        )
        config.write_text(
            f'group_id = "BENCH"\nedge_node_id = "GW1"\nmqtt_url = "{broker.url}"\n'
            f'primary_host_id = "{host}"\n[buffer]\npath = "{tmp / "buffer.db"}"\n'
            f'[http]\nlisten = "127.0.0.1:{http}"\n[[devices]]\nkind = "opcua"\n'
            f'device_id = "BENCH-1"\nendpoint = "{endpoint}"\n'
            f"publishing_interval_ms = {args.publishing_interval_ms}\n{tags}\n"
        )
        control = MqttClient(parse_mqtt_url(broker.url), "bench-control")
        await control.connect()
        await control.publish(state_topic(host), encode_state(True, now_ms()), retain=True)
        sub = Subscriber()
        listener = MqttClient(parse_mqtt_url(broker.url), "bench-subscriber", queue_size=100_000)
        await listener.connect()
        await listener.subscribe("spBv1.0/BENCH/DDATA/#")

        async def listen() -> None:
            async for message in listener.messages():
                sub.handle(message.payload)

        listening = asyncio.create_task(listen())
        plantwire = str(Path(sys.executable).with_name("plantwire"))
        log = (tmp / "gateway.log").open("ab")
        gateway = await asyncio.create_subprocess_exec(
            plantwire, "--log-level", "WARNING", "edge", "run", str(config), stdout=log, stderr=log
        )
        procs.append(gateway)
        await wait_health(http, lambda d: d["status"] == "ok", 60)
        await asyncio.sleep(3)
        t1, (loop1, cpu1, woke1, waits1) = now_ms(), run_time(gateway.pid)
        await asyncio.sleep(args.seconds)
        t2, (loop2, cpu2, woke2, waits2) = now_ms(), run_time(gateway.pid)
        gw_load = load()
        await asyncio.sleep(1)
        per_response = args.variables * max(1, args.publishing_interval_ms // args.interval_ms)
        await wait_health(http, lambda d: d["buffer"]["depth_values"] <= per_response, 30)
        await settle(sub, t1, t2)
        made = produced(truth, t1, t2)
        total, distinct = sub.window(t1, t2)
        gw_us = (cpu2 - cpu1) / max(1, distinct) * 1e6  # per value delivered, not produced
        print(
            f"gateway, durable buffer:       {total / ((t2 - t1) / 1000):,.0f} value changes/s "
            f"to broker acknowledgement, {gw_us:.1f} us CPU per value change; {gw_load}"
        )
        window_s = (t2 - t1) / 1000
        print(
            f"  gateway CPU {(cpu2 - cpu1) / window_s * 1000:.1f} ms/s: event loop thread "
            f"{(loop2 - loop1) / window_s * 1000:.1f}, other threads (MQTT network, buffer "
            f"writer) {(cpu2 - cpu1 - loop2 + loop1) / window_s * 1000:.1f}"
        )
        print(
            f"  wake-ups (voluntary context switches) a second: event loop thread "
            f"{(woke2 - woke1) / window_s:.1f}, other threads "
            f"{(waits2 - waits1 - woke2 + woke1) / window_s:.1f}"
        )
        print(
            f"  delivered / produced = {total:,} / {made:,} = {total / max(1, made):.6f} "
            f"(lost {made - distinct}, doubled {total - distinct})"
        )
        print(
            f"  gateway cost / bare client cost = {gw_us / bare_us:.2f}; best-known Python "
            f"gateway, measured by the issue: {BEST_KNOWN_GATEWAY_US} us per value"
        )

        # 3. replay after the primary host was away
        await control.publish(state_topic(host), encode_state(False, now_ms()), retain=True)
        await wait_health(http, lambda d: not d["mqtt"]["primary_host_online"], 10)
        h1 = now_ms()
        await asyncio.sleep(args.hold_seconds)
        before = sub.historical
        online_at = time.monotonic()
        await control.publish(state_topic(host), encode_state(True, now_ms()), retain=True)
        held = (await health(http))["buffer"]["depth_values"]
        await wait_health(http, lambda d: d["buffer"]["depth_values"] < per_response * 2, 120)
        drained_at = time.monotonic()
        h2 = now_ms()
        await settle(sub, h1, h2 - 1000)
        replayed = sub.historical - before
        replay_s = max(1e-3, sub.last_historical_at - online_at)
        made = produced(truth, h1, h2 - 1000)
        total, distinct = sub.window(h1, h2 - 1000)
        print(
            f"replay after a {args.hold_seconds:.0f} s hold: {held:,} values waiting; "
            f"{replayed:,} historical values in {replay_s:.2f} s = "
            f"{replayed / replay_s:,.0f} samples/s (drained in {drained_at - online_at:.2f} s, "
            "live values kept flowing)"
        )
        print(
            f"  delivered / produced over the hold = {total:,} / {made:,} = "
            f"{total / max(1, made):.6f} (lost {made - distinct}, doubled {total - distinct})"
        )
        await control.publish(state_topic(host), b"", retain=True)
        listening.cancel()
        await listener.disconnect()
        await control.disconnect()
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 10)
        broker.stop()
        for sock in ports:
            sock.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        port, variables, interval, truth = sys.argv[2:6]
        asyncio.run(serve(int(port), int(variables), int(interval), Path(truth)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        endpoint, variables, interval, warmup, seconds = sys.argv[2:7]
        asyncio.run(bare(endpoint, int(variables), int(interval), float(warmup), float(seconds)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, default=1000)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument(
        "--publishing-interval-ms",
        type=int,
        default=None,
        help="the subscriptions' publishing interval (default: --interval-ms); the fixed "
        "costs go with publish responses per second, not with values",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--hold-seconds", type=float, default=20.0, help="host away this long")
    parser.add_argument(
        "--cpu-load",
        type=int,
        default=0,
        help="start this many CPU-bound processes for the whole run (2: both cores busy)",
    )
    args = parser.parse_args()
    if args.publishing_interval_ms is None:
        args.publishing_interval_ms = args.interval_ms
    asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
