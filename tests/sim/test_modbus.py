"""Modbus TCP legacy machines read by an independent pymodbus client, decoded with the register
map of the generated gateway config, compared with the simulator's ground truth."""

from __future__ import annotations

import asyncio
import errno
import itertools
import math
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from plantwire_sim.factory import Factory, run_factory
from plantwire_sim.gateway_config import polled_every_ms
from plantwire_sim.legacy import TAGS
from plantwire_sim.polls import GONE_S
from plantwire_sim.scenario import Scenario, parse_scenario
from plantwire_sim.truth import TruthRecord

SCENARIO = """
name = "modbus"
seed = 3

[[enterprises]]
code = "E1"
uscc = "91320594MA1MXY3B2K"
name = "Legacy Works"

[[enterprises.sites]]
code = "S1"
name = "Hall"
edge_node = "GW1"

[[enterprises.sites.lines]]
code = "L1"
name = "Line"

[[enterprises.sites.equipment]]
code = "LEG-BIG"
name = "Press, big-endian words"
line = "L1"
control_type = "PLC"
declared_nc = false
protocol = "modbus"
program = [
  { mode = "AUTO", execution = "EXECUTING", seconds = 4 },
  { mode = "MANUAL", execution = "IDLE", seconds = 1 },
]
params = { unit_id = 1 }

[[enterprises.sites.equipment]]
code = "LEG-SWAP"
name = "Header, low word first and swapped bytes"
line = "L1"
control_type = "PLC"
declared_nc = false
protocol = "modbus"
program = [
  { mode = "SEMI_AUTO", execution = "EXECUTING", seconds = 3 },
  { mode = "SETUP", execution = "IDLE", seconds = 2 },
]
params = { unit_id = 7, word_order = "little", byte_order = "little" }

[[enterprises.sites.equipment]]
code = "LEG-3"
name = "Saw"
line = "L1"
control_type = "PLC"
declared_nc = false
protocol = "modbus"
program = [{ mode = "MANUAL", execution = "EXECUTING", seconds = 60 }]
"""
PROTOCOLS = frozenset({"modbus"})
TAG_OF = {t.metric: t.name for t in TAGS}  # every register feeds its own metric


def load() -> Scenario:
    return parse_scenario(SCENARIO)


def registers_of(factory: Factory, code: str) -> list[dict[str, Any]]:
    scenario = factory.scenario
    enterprise, site = scenario.enterprises[0], scenario.enterprises[0].sites[0]
    config = factory.gateway_config(
        enterprise, site, "mqtt://127.0.0.1:1", None, protocols=PROTOCOLS, metrics="all"
    )
    (device,) = [d for d in config["devices"] if d["device_id"] == code]
    assert device["kind"] == "modbus"
    registers: list[dict[str, Any]] = device["registers"]
    return registers


def decode(reg: dict[str, Any], tables: dict[str, list[int] | list[bool]]) -> Any:
    """An independent reading of one register entry of the gateway config."""
    words = tables[reg["table"]]
    if reg["type"] == "bool":
        return bool(words[reg["address"]])
    n = 2 if reg["type"] in ("uint32", "int32", "float32") else 1
    regs = [int(w) for w in words[reg["address"] : reg["address"] + n]]
    if reg.get("byte_order") == "little":
        regs = [((w & 0xFF) << 8) | (w >> 8) for w in regs]
    if reg.get("word_order") == "little":
        regs.reverse()
    raw = struct.pack(f">{n}H", *regs)
    fmt = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}
    return struct.unpack(fmt[reg["type"]], raw)[0]


async def read_all(client: AsyncModbusTcpClient, unit: int) -> dict[str, list[int] | list[bool]]:
    hr = await client.read_holding_registers(0, count=32, device_id=unit)
    ir = await client.read_input_registers(0, count=4, device_id=unit)
    di = await client.read_discrete_inputs(0, count=16, device_id=unit)
    co = await client.read_coils(0, count=16, device_id=unit)
    for r in (hr, ir, di, co):
        assert not r.isError(), r
    return {
        "holding": list(hr.registers),
        "input": list(ir.registers),
        "discrete": list(di.bits[:16]),
        "coil": list(co.bits[:16]),
    }


def truth_prefixes(factory: Factory, code: str, start: int, stop: int) -> list[dict[str, Any]]:
    """The machine's true values after each record between two counts of the recorder."""
    records = factory.truth.records()
    latest: dict[str, Any] = {}
    for r in records[:start]:
        if isinstance(r, TruthRecord) and r.machine == code:
            latest[r.tag] = r.value
    out = [dict(latest)]
    for r in records[start:stop]:
        if isinstance(r, TruthRecord) and r.machine == code:
            latest[r.tag] = r.value
            out.append(dict(latest))
    return out


async def test_registers_read_back_as_the_true_values() -> None:
    async with run_factory(load(), protocols=PROTOCOLS, speed=20) as factory:
        for code, unit in (("LEG-BIG", 1), ("LEG-SWAP", 7)):
            address = factory.modbus[code]
            assert (address.host, address.unit_id) == ("127.0.0.1", unit)
            regs = registers_of(factory, code)
            assert len(regs) == len(TAGS)
            client = AsyncModbusTcpClient(address.host, port=address.port)
            await client.connect()
            try:
                for _ in range(12):
                    before = factory.truth.count
                    tables = await read_all(client, unit)
                    after = factory.truth.count
                    candidates = truth_prefixes(factory, code, before, after)
                    for table in tables:  # each response is the truth of one instant
                        shown = {
                            TAG_OF[r["metric"]]: decode(r, tables)
                            for r in regs
                            if r["table"] == table
                        }
                        assert any(
                            all(t[tag] == v for tag, v in shown.items()) for t in candidates
                        ), (code, table, shown, candidates[-1])
                    await asyncio.sleep(0.05)
            finally:
                client.close()
        changed = {r.tag for r in factory.truth.values("LEG-BIG") if r.ts_ms > factory.t0_ms}
        assert {"ModeWord", "ExecutionWord", "PartCounter", "PowerActive"} <= changed


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_faults_exception_nan_absurd_values_restart_and_drop() -> None:
    async with run_factory(load(), protocols=PROTOCOLS, speed=10) as factory:
        big, swap, saw = (factory.modbus[c] for c in ("LEG-BIG", "LEG-SWAP", "LEG-3"))
        regs = {r["metric"]: r for r in registers_of(factory, "LEG-SWAP")}
        await factory.fault("LEG-BIG", "bad_status", 30)  # 3 wall seconds
        await factory.fault("LEG-SWAP", "nan", 30)
        await factory.fault("LEG-SWAP", "out_of_range", 30)
        await factory.fault("LEG-3", "restart", 30)
        client = AsyncModbusTcpClient(big.host, port=big.port, retries=0, timeout=2)
        other = AsyncModbusTcpClient(swap.host, port=swap.port, retries=0, timeout=2)
        await client.connect()
        await other.connect()
        await asyncio.sleep(0.1)
        failed = await client.read_holding_registers(0, count=4, device_id=1)
        assert failed.isError() and failed.exception_code == 4  # slave device failure
        tables = await read_all(other, 7)
        assert math.isnan(decode(regs["Energy/ActivePower"], tables))  # float32 NaN wins
        assert decode(regs["Machine/Temperature"], tables) == 32767  # sensor break
        assert decode(regs["Motor/Current"], tables) == 65535
        down = AsyncModbusTcpClient(saw.host, port=saw.port, retries=0, timeout=1)
        assert not await down.connect()
        down.close()
        with socket.socket() as taker, pytest.raises(OSError) as taken:
            taker.bind((saw.host, saw.port))  # the port of a server that is down stays held
        assert taken.value.errno == errno.EADDRINUSE

        async def healed() -> bool:
            return not any(m.faults.started for m in factory.machines.values())

        await until(healed)
        assert not (await client.read_holding_registers(0, count=4, device_id=1)).isError()
        tables = await read_all(other, 7)
        assert not math.isnan(decode(regs["Energy/ActivePower"], tables))
        assert decode(regs["Machine/Temperature"], tables) != 32767
        client.close()
        other.close()
        back = AsyncModbusTcpClient(saw.host, port=saw.port, retries=0, timeout=2)
        assert await back.connect()  # the restarted server listens on its port again
        assert not (await back.read_holding_registers(0, count=2, device_id=1)).isError()
        back.close()
        reader, writer = await asyncio.open_connection(big.host, big.port)
        await asyncio.sleep(0.1)
        await factory.fault("LEG-BIG", "drop", 1)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server cut the connection
        writer.close()
        faults = [(f.machine, f.fault, f.origin) for f in factory.truth.faults()]
        assert faults == [
            ("LEG-BIG", "bad_status", "control"),
            ("LEG-SWAP", "nan", "control"),
            ("LEG-SWAP", "out_of_range", "control"),
            ("LEG-3", "restart", "control"),
            ("LEG-BIG", "drop", "control"),
        ]


async def test_simulated_time_waits_for_a_gateway_polling_late() -> None:
    """At 100x a poll of LEG-3 is due every 10 ms of wall time (1 simulated second); a reader
    that polls its execution register every 0.2 s of wall time (20 simulated seconds) holds
    the clock: it runs at most two poll intervals (2 simulated seconds) past each read, so
    that no state of a polled machine passes unseen. Gone for two seconds, it no longer does."""
    async with run_factory(load(), protocols=PROTOCOLS, speed=100) as factory:
        poller = factory.polls.pollers["LEG-3"]
        assert poller.budget_ms == 2 * polled_every_ms(factory.players["LEG-3"].machine, 100)
        client = AsyncModbusTcpClient("127.0.0.1", port=factory.modbus["LEG-3"].port)
        await client.connect()
        try:
            seen: list[int] = []
            for _ in range(8):
                r = await client.read_holding_registers(0, count=2, device_id=1)
                assert not r.isError(), r
                seen.append(poller.last_sim_ms)
                await asyncio.sleep(0.2)
            steps = [b - a for a, b in itertools.pairwise(seen)]
            assert all(0 <= s <= poller.budget_ms for s in steps), steps
            assert factory.clock.state()["slowed_s"] > 0
            # reads of other registers are not polls of the state
            before = poller.reads
            assert not (await client.read_input_registers(0, count=2, device_id=1)).isError()
            assert poller.reads == before
        finally:
            client.close()
        last = poller.last_sim_ms
        await asyncio.sleep(GONE_S + 0.5)
        assert factory.polls.limit(time.time()) is None
        assert factory.clock.now_ms() > last + poller.budget_ms  # runs on without the reader
