"""What the gateway runs per configured device: an adapter reading it over its protocol."""

from __future__ import annotations

import asyncio
from typing import Protocol

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
