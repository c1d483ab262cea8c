"""The edge node's strict mode (``spec_strict``: Sparkplug's QoS 0) loses nothing with
plantwire's host: a data message lost on the way is never confirmed as committed, so the node
sends it again (flagged historical) after ``commit_timeout_s``, and the host's keys absorb
what arrives twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from plantwire_bus.payload import DataType
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

from ..mqtt_tap import Packet, mqtt_tap

T0 = 1_767_225_600_000


async def stored(database_url: str, group: str) -> list[tuple[Any, int]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT t.value, (extract(epoch FROM t.ts) * 1000)::bigint FROM series s"
            " JOIN sample_num t ON t.series_id = s.id"
            " WHERE s.group_id = %s AND s.metric = 'Count' ORDER BY t.ts",
            (group,),
        )
        return [(float(r[0]), int(r[1])) for r in await cur.fetchall()]


async def test_strict_qos0_loses_nothing_with_plantwire_host(
    mqtt_url: str, database_url: str, unique: str
) -> None:
    group, host = f"Q{unique}", f"qh-{unique}"
    settings = PlatformSettings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        host_id=host,
        batch_age_ms=50,
        spec_strict=True,
        unregistered_nodes="admit",
    )
    worker = IngestWorker(settings)
    stop_worker = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(stop_worker))
    await asyncio.wait_for(worker.ready.wait(), 30)
    data_seen = 0

    def every_fifth_data_message(packet: Packet) -> bool:
        nonlocal data_seen
        if "/DDATA/" not in packet.topic:
            return False
        data_seen += 1
        return data_seen % 5 == 3

    try:
        async with mqtt_tap(mqtt_url) as tap:
            tap.drop = every_fifth_data_message
            config = EdgeConfig.model_validate(
                {
                    "group_id": group,
                    "edge_node_id": "GW",
                    "mqtt_url": tap.url,
                    "primary_host_id": host,
                    "batch_ms": 20,
                    "spec_strict": True,
                    "commit_timeout_s": 2,
                    "devices": [
                        {"kind": "opcua", "device_id": "M1", "endpoint": "opc.tcp://127.0.0.1:1",
                         "tags": [{"node": "nsu=urn:x;s=a", "metric": "Count"}]}
                    ],
                }
            )  # fmt: skip
            node = EdgeNode(config)
            dev = node.channel("M1")
            count = dev.metric("Count", DataType.Double)
            dev.set_online([(count, 0.0, T0)])
            stop = asyncio.Event()
            task = asyncio.create_task(node.run(stop))
            await asyncio.wait_for(node.connected.wait(), 30)
            for i in range(1, 201):
                dev.put(count, float(i), T0 + i)
                if i % 10 == 0:
                    await asyncio.sleep(0.03)
            truth = [(float(i), T0 + i) for i in range(0, 201)]
            deadline = time.monotonic() + 60
            while await stored(database_url, group) != truth:
                assert time.monotonic() < deadline, "values missing after 60 s"
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.wait_for(task, 20)
        published = [p for p in tap.packets if "/DDATA/" in p.topic]
        assert published and all(p.qos == 0 for p in published)  # strict: QoS 0 on the wire
        assert tap.dropped, "the tap lost no message: nothing was proved"
        assert node.stats.commit_timeouts >= 1  # what was lost was sent again
        assert node.buffer.stats.depth_values == 0
    finally:
        stop_worker.set()
        await asyncio.wait_for(worker_task, 20)
