"""The gateway process: one Sparkplug edge node, an adapter per configured device, and the
operations endpoint (/metrics, /healthz) when configured."""

from __future__ import annotations

import asyncio

from plantwire_edge.adapter import make_adapter
from plantwire_edge.clock import Clock
from plantwire_edge.config import EdgeConfig
from plantwire_edge.node import EdgeNode


class Gateway:
    def __init__(self, config: EdgeConfig, clock: Clock | None = None) -> None:
        """``clock`` stamps what the gateway dates itself (default: the wall clock; see
        :mod:`plantwire_edge.clock`)."""
        self.config = config
        self.node = EdgeNode(config, clock=clock)
        self.adapters = [make_adapter(device, self.node, config) for device in config.devices]

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then adapters stop first and the node drains and dies."""
        monitor = None
        if self.config.http is not None:
            from plantwire_edge.monitor import Monitor

            monitor = Monitor(self.config.http, self.node, self.adapters)
            await monitor.start()  # raises MonitorError if it cannot listen
        try:
            adapters_stop, node_stop = asyncio.Event(), asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                node_task = tg.create_task(self.node.run(node_stop))
                adapter_tasks = [tg.create_task(a.run(adapters_stop)) for a in self.adapters]
                await stop.wait()
                adapters_stop.set()
                for task in adapter_tasks:
                    await task
                node_stop.set()
                await node_task
        finally:
            if monitor is not None:
                await monitor.stop()
