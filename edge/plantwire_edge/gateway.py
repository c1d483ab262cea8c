"""The gateway process: one Sparkplug edge node, an adapter per configured device, and the
operations endpoint (/metrics, /healthz) when configured."""

from __future__ import annotations

import asyncio
from typing import Protocol

from plantwire_edge.clock import Clock
from plantwire_edge.config import EdgeConfig, ModbusDevice, MqttDevice
from plantwire_edge.devices import AnyDevice
from plantwire_edge.node import EdgeNode
from plantwire_edge.status import AdapterStatus


class Adapter(Protocol):
    status: AdapterStatus
    connected: asyncio.Event

    async def run(self, stop: asyncio.Event) -> None: ...


def make_adapter(device: AnyDevice, node: EdgeNode, config: EdgeConfig) -> Adapter:
    """The adapter for a device table (imports only the protocol library it needs)."""
    if isinstance(device, ModbusDevice):
        from plantwire_edge.modbus import ModbusAdapter

        return ModbusAdapter(device, node)
    if isinstance(device, MqttDevice):
        from plantwire_edge.mqtt_device import MqttDeviceAdapter

        return MqttDeviceAdapter(device, node)
    from plantwire_edge.opcua import OpcUaAdapter

    return OpcUaAdapter(device, node, config.client_uri)


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

            monitor = Monitor(self)
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
