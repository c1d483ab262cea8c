"""The Modbus TCP adapter against a real pymodbus server: typed registers, word and byte
orders, scale and offset, bits, mapping; batched reads; a bad register isolated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plantwire_bus.mosquitto import free_port
from plantwire_bus.payload import DataType as PDT
from plantwire_edge.config import EdgeConfig
from plantwire_edge.registers import Layout, encode

from .conftest import probe_on, running

HOLDING, COILS, DISCRETE, INPUT = 16, 15, 2, 4  # function codes used to set values


@asynccontextmanager
async def modbus_server(port: int) -> AsyncIterator[ModbusTcpServer]:
    """Holding registers 0-19 and 30-39 (20-29 do not exist), inputs 0-9, 16 coils and
    16 discrete inputs, unit 1."""
    device = SimDevice(
        id=1,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [
                SimData(0, count=20, values=0, datatype=DataType.REGISTERS),
                SimData(30, count=10, values=0, datatype=DataType.REGISTERS),
            ],
            [SimData(0, count=10, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


REGISTERS: list[dict[str, Any]] = [
    {"metric": "Production/PartCount", "table": "holding", "address": 0, "type": "uint32"},
    {
        "metric": "Oven/Temperature",
        "table": "holding",
        "address": 2,
        "type": "int16",
        "scale": 0.1,
        "offset": -40.0,
    },
    {"metric": "Flow", "table": "holding", "address": 4, "type": "float32", "word_order": "little"},
    {
        "metric": "mode",
        "table": "holding",
        "address": 6,
        "type": "uint16",
        "map": "plantwire/ModeCode",
    },
    {"metric": "Door/Open", "table": "holding", "address": 7, "bit": 3},
    {
        "metric": "Position",
        "table": "holding",
        "address": 10,
        "type": "int32",
        "byte_order": "little",
    },
    {"metric": "Far", "table": "holding", "address": 31, "type": "uint16"},
    {"metric": "Broken", "table": "holding", "address": 25, "type": "uint16"},
    {"metric": "Pressure", "table": "input", "address": 1, "type": "uint16"},
    {"metric": "Running", "table": "coil", "address": 3, "type": "bool"},
    {"metric": "Alarm", "table": "discrete", "address": 5, "type": "bool"},
]


async def set_register(server: ModbusTcpServer, spec: dict[str, Any], value: Any) -> None:
    layout = Layout(
        spec["table"],
        spec["address"],
        spec.get("type", "uint16"),
        spec.get("word_order", "big"),
        spec.get("byte_order", "big"),
    )
    code = {"holding": HOLDING, "input": INPUT, "coil": COILS, "discrete": DISCRETE}
    words = encode(layout, value)
    values: list[Any] = [bool(w) for w in words] if spec["table"] in ("coil", "discrete") else words
    await server.async_setValues(1, code[spec["table"]], spec["address"], values)


async def test_register_map_read_decoded_and_bad_register_isolated(
    mqtt_url: str, group: str
) -> None:
    port = free_port()
    specs = {s["metric"]: s for s in REGISTERS}
    async with modbus_server(port) as server:
        await set_register(server, specs["Production/PartCount"], 70_000)
        await set_register(server, specs["Oven/Temperature"], -123)  # raw: -52.3 degrees
        await set_register(server, specs["Flow"], 12.5)
        await set_register(server, specs["mode"], 1)
        await server.async_setValues(1, HOLDING, 7, [0b1000])  # bit 3 set
        await set_register(server, specs["Position"], -70_000)
        await set_register(server, specs["Far"], 9)
        await set_register(server, specs["Pressure"], 512)
        await set_register(server, specs["Running"], True)
        cfg = EdgeConfig.model_validate(
            {
                "group_id": group,
                "edge_node_id": "GW1",
                "mqtt_url": mqtt_url,
                "primary_host_id": "",
                "batch_ms": 50,
                "devices": [
                    {
                        "kind": "modbus",
                        "device_id": "LEG-07",
                        "host": "127.0.0.1",
                        "port": port,
                        "poll_interval_ms": 100,
                        "max_gap": 30,
                        "registers": REGISTERS,
                    }
                ],
            }
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "DBIRTH")
            birth = {s.metric: s.value for s in probe.values() if s.kind == "DBIRTH"}
            await set_register(server, specs["Production/PartCount"], 70_001)
            await set_register(server, specs["mode"], 4)
            await set_register(server, specs["Alarm"], True)
            await probe.wait_for(
                lambda: (
                    {("Production/PartCount", 70_001), ("State/Mode", "MDI"), ("Alarm", True)}
                    <= {(s.metric, s.value) for s in probe.values()}
                ),
                "changes",
            )
            await asyncio.sleep(0.5)  # several more polls with nothing changing

    assert birth == {
        "Production/PartCount": 70_000,
        "Oven/Temperature": pytest.approx(-52.3),
        "Flow": 12.5,
        "State/Mode": "AUTO",
        "Door/Open": True,
        "Position": -70_000,
        "Far": 9,
        "Pressure": 512,
        "Running": True,
        "Alarm": False,
    }
    assert adapter.status.bad_points == {"holding:25": "device answered with exception code 2"}
    counts = [s.value for s in probe.values() if s.metric == "Production/PartCount"]
    assert counts == [70_000, 70_000, 70_001]  # birth, first poll, change: no repeats
    types = {m.name: m.datatype for m in probe.payloads("DBIRTH")[0].metrics}
    assert types == {
        "Production/PartCount": PDT.UInt32,
        "Oven/Temperature": PDT.Double,
        "Flow": PDT.Float,
        "State/Mode": PDT.String,
        "Door/Open": PDT.Boolean,
        "Position": PDT.Int32,
        "Far": PDT.UInt16,
        "Pressure": PDT.UInt16,
        "Running": PDT.Boolean,
        "Alarm": PDT.Boolean,
    }
