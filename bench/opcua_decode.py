"""Decoding OPC UA Publish responses: the gateway's readings against asyncua's own decoder,
measured in the same run on the same bytes.

    .venv/bin/python bench/opcua_decode.py [--variables 100] [--responses 20] [--seconds 2]

An asyncua server changes every variable (Double, with source and server timestamps) every
100 ms; a client subscribed to all of them keeps the bytes of each Publish response. Each
response is then decoded over and over by asyncua (``struct_from_binary``, the dataclasses)
and by :func:`plantwire_edge.opcua_publish.publish_response` (readings); both must give the
same values. Prints the CPU time per response and per value of each, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.utils import Buffer
from asyncua.server.server import Server
from asyncua.ua.ua_binary import struct_from_binary

from plantwire_bus.mosquitto import free_port
from plantwire_edge.opcua_publish import Readings, Recording, publish_response, readings_of


async def capture(variables: int, responses: int) -> list[bytes]:
    port = free_port()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:plantwire:bench")
    obj = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("Bench"), ua.Int16(idx)), ua.QualifiedName("Bench", idx)
    )
    nodes = [
        await obj.add_variable(
            ua.NodeId(ua.String(f"V{i:04d}"), ua.Int16(idx)),
            ua.QualifiedName(f"V{i:04d}", idx),
            0.0,
        )
        for i in range(variables)
    ]
    await server.start()
    try:
        client = Client(f"opc.tcp://127.0.0.1:{port}/bench")
        session = Recording(client.uaclient)
        client.uaclient.session = session
        async with client:
            sub = await client.create_subscription(100, None)
            await sub.subscribe_data_change(
                [client.get_node(n.nodeid) for n in nodes], queuesize=10
            )
            tick = 0
            while sum(len(r) > 1_000 for r in session.raw) < responses:
                tick += 1
                stamp = cast(ua.DateTime, datetime.now(UTC))
                for i, node in enumerate(nodes):
                    dv = ua.DataValue(
                        ua.Variant(tick + i / 10_000, ua.VariantType.Double),
                        SourceTimestamp=stamp,
                        ServerTimestamp=stamp,
                    )
                    await server.write_attribute_value(node.nodeid, dv)
                await asyncio.sleep(0.1)
    finally:
        await server.stop()
    full = [r for r in session.raw if len(r) > 1_000][-responses:]
    return [r for r in full if len(r) == len(full[-1])]  # every variable in the response


def cpu_per_call(fn: Callable[[], object], seconds: float) -> float:
    calls, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        fn()
        calls += 1
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, default=100)
    parser.add_argument("--responses", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU time per decoder")
    args = parser.parse_args()
    raw = asyncio.run(capture(args.variables, args.responses))
    values = 0
    for data in raw:  # the same values from both, or the figures mean nothing
        theirs = struct_from_binary(ua.PublishResponse, Buffer(data))
        ours = publish_response(Buffer(data))
        pairs = zip(
            ours.Parameters.NotificationMessage.NotificationData,
            theirs.Parameters.NotificationMessage.NotificationData,
            strict=True,
        )
        for mine, their in pairs:
            assert isinstance(mine, Readings)
            assert mine.items == readings_of(their.MonitoredItems)
            values += len(mine.items)
    per = values // len(raw)
    print(
        f"{len(raw)} Publish responses of {per} values ({len(raw[0]):,} bytes each) from an "
        f"asyncua server; both decoders agree on all {values:,} values"
    )

    def run(decode: Callable[[Buffer], object]) -> Callable[[], None]:
        def all_of_them() -> None:
            for data in raw:
                decode(Buffer(data))

        return all_of_them

    def generic(buf: Buffer) -> object:
        return struct_from_binary(ua.PublishResponse, buf)

    for name, decode in (("asyncua (baseline)", generic), ("readings", publish_response)):
        each = cpu_per_call(run(decode), args.seconds) / len(raw)
        print(
            f"{name:<19} {each * 1e6:8.1f} us CPU per response, {each / per * 1e6:5.2f} us "
            f"per value; load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
