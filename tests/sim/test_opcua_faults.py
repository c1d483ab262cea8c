"""OPC UA layouts and faults, observed with a plain asyncua client: shared servers, bad status
codes, a PLC clock reset, NaN and absurd values, frozen values, restart and dropped sessions."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from asyncua import ua
from asyncua.client.client import Client

from plantwire_sim.factory import run_factory
from plantwire_sim.opcua_server import NAMESPACE_URI
from plantwire_sim.scenario import Scenario, parse_scenario

SCENARIO = """
name = "opcua-faults"
seed = 8

[[enterprises]]
code = "E1"
uscc = "91320594MA1MXY3B2K"
name = "Fault Works"

[[enterprises.sites]]
code = "S1"
name = "Hall 1"
edge_node = "GW1"

[[enterprises.sites.lines]]
code = "L1"
name = "Line"

[[enterprises.sites.equipment]]
code = "CNC"
count = 4
name = "Lathe"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 3000
program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 3600 }]

[[enterprises.sites.equipment]]
code = "IMM"
name = "Moulding machine"
line = "L1"
control_type = "PLC"
declared_nc = true
profile = "injection"
program = [
  { mode = "AUTO", execution = "EXECUTING", seconds = 2 },
  { mode = "AUTO", execution = "IDLE", seconds = 1 },
]

[[enterprises.sites]]
code = "S2"
name = "Hall 2"
edge_node = "GW2"

[[enterprises.sites.lines]]
code = "L1"
name = "Line"

[[enterprises.sites.equipment]]
code = "CNC-X"
name = "Mill"
line = "L1"
control_type = "CNC"
declared_nc = true
spindle_rpm = 9000
program = [{ mode = "AUTO", execution = "EXECUTING", seconds = 3600 }]
"""
PROTOCOLS = frozenset({"opcua"})


class Collector:
    def __init__(self) -> None:
        self.values: list[object] = []

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        self.values.append(val)


def load() -> Scenario:
    return parse_scenario(SCENARIO)


async def read(client: Client, code: str, tag: str) -> ua.DataValue:
    idx = await client.get_namespace_index(NAMESPACE_URI)
    dv: ua.DataValue = await client.get_node(f"ns={idx};s={code}.{tag}").read_data_value(
        raise_on_bad_status=False
    )
    return dv


@pytest.mark.parametrize(("layout", "servers"), [("site", 2), ("fleet", 1)])
async def test_shared_servers_host_one_object_per_machine(layout: str, servers: int) -> None:
    async with run_factory(load(), protocols=PROTOCOLS, layout=layout) as factory:
        endpoints = factory.endpoints
        assert len(set(endpoints.values())) == servers == len(factory.hosts)
        if layout == "site":
            assert endpoints["CNC-01"].endswith("/plantwire/E1/S1")
            assert endpoints["CNC-X"].endswith("/plantwire/E1/S2")
        async with Client(endpoints["CNC-01"], timeout=5) as client:
            idx = await client.get_namespace_index(NAMESPACE_URI)
            objects = {
                (await n.read_browse_name()).Name
                for n in await client.nodes.objects.get_children()
                if n.nodeid.NamespaceIndex == idx
            }
            same = {c for c, url in endpoints.items() if url == endpoints["CNC-01"]}
            assert objects == same
            for code in same:
                dv = await read(client, code, "AlarmActive")
                assert dv.Value is not None and dv.Value.Value is False


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def ms(dt: datetime | None) -> int:
    assert dt is not None
    return round(dt.replace(tzinfo=UTC).timestamp() * 1000)


async def test_faults_seen_by_a_client() -> None:
    async with run_factory(load(), protocols=PROTOCOLS, speed=10) as factory:
        clients = {code: Client(url, timeout=5) for code, url in factory.endpoints.items()}
        for client in clients.values():  # connected first: a loaded machine takes seconds
            await client.connect()
        # five faults at once, 30 simulated s (3 wall s) each, on five machines
        for code, kind in (
            ("CNC-01", "bad_status"),
            ("CNC-02", "clock_jump"),
            ("CNC-03", "nan"),
            ("CNC-04", "out_of_range"),
            ("CNC-X", "freeze"),
        ):
            await factory.fault(code, kind, 30)
        try:

            async def shown() -> bool:  # the next tick shows them
                dv = await read(clients["CNC-01"], "CNC-01", "SpindleSpeed")
                return dv.StatusCode is not None and dv.StatusCode.name == "BadSensorFailure"

            await until(shown)
            dv = await read(clients["CNC-02"], "CNC-02", "PartCount")
            assert dv.SourceTimestamp is not None
            assert dv.SourceTimestamp.replace(tzinfo=UTC) < datetime(2000, 1, 2, tzinfo=UTC)
            nan = await read(clients["CNC-03"], "CNC-03", "SpindleLoad")
            part = await read(clients["CNC-03"], "CNC-03", "PartCount")
            assert nan.Value is not None and math.isnan(nan.Value.Value)
            assert part.Value is not None and part.Value.Value == 0  # counters are not analog
            dv = await read(clients["CNC-04"], "CNC-04", "SpindleSpeed")
            assert dv.Value is not None and dv.Value.Value == 999_999.0
            frozen = await read(clients["CNC-X"], "CNC-X", "SpindleSpeed")
            await asyncio.sleep(0.3)  # 3 simulated s: the real speed was re-drawn
            assert (await read(clients["CNC-X"], "CNC-X", "SpindleSpeed")).Value == frozen.Value
            assert [
                r
                for r in factory.truth.values("CNC-X", "SpindleSpeed")
                if r.ts_ms > ms(frozen.SourceTimestamp)
            ]  # the machine went on

            async def healed() -> bool:
                return not any(m.faults.started for m in factory.machines.values())

            await until(healed)
            for code, client in clients.items():  # the interfaces show the truth again
                if code == "IMM":
                    continue
                dv = await read(client, code, "SpindleSpeed")
                assert dv.StatusCode is not None and dv.StatusCode.is_good()
                assert dv.Value is not None
                shown_at = ms(dv.SourceTimestamp)
                true_then = [
                    r.value
                    for r in factory.truth.values(code, "SpindleSpeed")
                    if r.ts_ms <= shown_at
                ][-1]
                assert dv.Value.Value == true_then, code
                if code == "CNC-X":  # a machine's values keep coming after a freeze
                    assert ms(dv.SourceTimestamp) > ms(frozen.SourceTimestamp)

            storm = Collector()
            imm = clients["IMM"]
            idx = await imm.get_namespace_index(NAMESPACE_URI)
            sub = await imm.create_subscription(20, storm)
            await sub.subscribe_data_change(
                imm.get_node(f"ns={idx};s=IMM.AlarmCode"),
                queuesize=100,
                sampling_interval=ua.Double(0),
            )
            await asyncio.sleep(0.1)
            await factory.fault("IMM", "alarm_storm", 2, rate_per_s=10)

            async def calm() -> bool:
                return len(storm.values) > 10 and storm.values[-1] == 0

            await until(calm)
            raised = [v for v in storm.values if v == 9999]
            assert 5 <= len(raised) <= 15  # 10 raised and 10 cleared over 2 simulated s
        finally:
            for client in clients.values():
                await client.disconnect()

        url = factory.endpoints["CNC-01"]
        await factory.fault("CNC-01", "restart", 30)
        await asyncio.sleep(0.3)
        with pytest.raises((OSError, asyncio.TimeoutError, ConnectionError)):
            async with Client(url, timeout=1):
                pass

        async def back() -> bool:
            try:
                async with Client(url, timeout=2):
                    return True
            except (TimeoutError, OSError, ConnectionError):
                return False

        await until(back)
        async with Client(url, timeout=5) as client:  # the same endpoint again
            dv = await read(client, "CNC-01", "ProgramStatus")
            assert dv.Value is not None and dv.Value.Value == 1

            lost = asyncio.Event()

            async def on_lost(exc: Exception) -> None:
                lost.set()

            client.connection_lost_callback = on_lost
            await factory.fault("CNC-01", "drop", 1)
            await asyncio.wait_for(lost.wait(), 10)
        kinds = sorted(f.fault for f in factory.truth.faults())
        assert kinds == sorted(
            [
                "bad_status",
                "clock_jump",
                "nan",
                "out_of_range",
                "freeze",
                "alarm_storm",
                "restart",
                "drop",
            ]
        )


async def test_a_restarted_server_listens_again_at_the_faults_end_in_simulated_time() -> None:
    """At 600x a restart of 30 simulated s (50 wall ms) of a server with a client connected:
    it listens again within 2 simulated s of the fault's end. asyncua's stop took up
    to a wall second with a client connected (600 simulated s), and the simulator's clock ran
    on meanwhile: a gateway found the server back minutes after the truth said it was."""
    async with run_factory(load(), protocols=PROTOCOLS, speed=600) as factory:
        url = factory.endpoints["CNC-01"]
        async with Client(url, timeout=5) as client:
            await read(client, "CNC-01", "ProgramStatus")
            fault = await factory.fault("CNC-01", "restart", 30)
            lost = asyncio.Event()

            async def on_lost(exc: Exception) -> None:
                lost.set()

            client.connection_lost_callback = on_lost
            await asyncio.wait_for(lost.wait(), 10)
        address = _host_port(url)
        while await _listens(address):  # asyncua closes its listener after the connections
            await asyncio.sleep(0.001)
        listening = None
        deadline = time.monotonic() + 30
        while listening is None and time.monotonic() < deadline:
            before = factory.clock.now_ms()
            if await _listens(address):
                listening = before
            else:
                await asyncio.sleep(0.001)
        assert listening is not None, "the server never listened again"
        assert fault.end_ms - 2_000 <= listening <= fault.end_ms + 2_000, (
            f"listening {(listening - fault.end_ms) / 1000:+.1f} simulated s after the end"
        )


def _host_port(url: str) -> tuple[str, int]:
    host, _, rest = url.removeprefix("opc.tcp://").partition(":")
    return host, int(rest.split("/", 1)[0])


async def _listens(address: tuple[str, int]) -> bool:
    try:
        _, writer = await asyncio.open_connection(*address)
    except OSError:
        return False
    writer.close()
    return True
