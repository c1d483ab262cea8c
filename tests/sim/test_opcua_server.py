"""OPC UA fleet: real asyncua servers checked with an independent plain asyncua client."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif

from plantwire_bus.state import ControlType, Execution, Mode
from plantwire_sim.behaviour import profile_of
from plantwire_sim.opcua_server import NAMESPACE_URI, Fleet, run_fleet
from plantwire_sim.scenario import Enterprise, Line, Machine, Scenario, Segment, Site
from plantwire_sim.truth import TruthRecorder, read_truth_file

X, ID = Execution.EXECUTING, Execution.IDLE
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
CORE_TYPES = {  # the variables the default gateway config reads, typed as OPC 40501/40502
    "MachineOperationMode": ua.VariantType.Int32,
    "ProgramStatus": ua.VariantType.Int32,
    "SpindleSpeed": ua.VariantType.Double,
    "PartCount": ua.VariantType.UInt32,
}


def machine(code: str, *program: tuple[Mode, Execution, float], protocol: str = "opcua") -> Machine:
    return Machine.model_validate(
        {
            "code": code,
            "name": code,
            "line": "L1",
            "control_type": ControlType.CNC,
            "declared_nc": True,
            "protocol": protocol,
            "spindle_rpm": 2000.0,
            "program": [Segment(mode=m, execution=e, seconds=s) for m, e, s in program],
        }
    )


SCENARIO = Scenario(
    name="test",
    seed=42,
    enterprises=(
        Enterprise(
            code="E1",
            uscc="91320594MA1MXY3B2K",
            name="Test Co.",
            sites=(
                Site(
                    code="S1",
                    name="Site 1",
                    edge_node="GW1",
                    lines=(Line(code="L1", name="Line 1"),),
                    equipment=(
                        machine(
                            "SIM-A", (Mode.AUTO, X, 1.5), (Mode.MANUAL, X, 1), (Mode.AUTO, ID, 1)
                        ),
                        machine("SIM-B", (Mode.AUTO, X, 2), (Mode.SETUP, ID, 1)),
                        machine("OFFLINE", protocol="none"),
                    ),
                ),
            ),
        ),
    ),
)
CODES = ("SIM-A", "SIM-B")
PROFILE = profile_of(SCENARIO.machines()[0][2])
TAGS = [t.name for t in PROFILE.tags]
VARIANT_TYPES = {t.name: getattr(ua.VariantType, t.opcua) for t in PROFILE.tags}


def to_ms(dt: datetime | None) -> int:
    assert dt is not None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms, rest = divmod(dt - EPOCH, MS)
    assert not rest, f"{dt} is not a whole millisecond"
    return int(ms)


async def tag_node(client: Client, code: str, tag: str) -> Node:
    idx = await client.get_namespace_index(NAMESPACE_URI)
    return client.get_node(ua.NodeId.from_string(f"ns={idx};s={code}.{tag}"))


async def test_fleet_serves_each_opcua_machine_with_typed_variables(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"
    with TruthRecorder(truth_file) as truth:
        async with run_fleet(SCENARIO, base_port=0, truth=truth, seed=1) as fleet:
            await check_address_space(fleet)
    assert read_truth_file(truth_file) == truth.records()  # JSON Lines round-trip exactly


async def check_address_space(fleet: Fleet) -> None:
    """Each machine: its endpoint, object, typed variables and current values."""
    assert set(fleet.endpoints) == set(CODES)  # protocol "none" is not served
    for code, url in fleet.endpoints.items():
        assert re.fullmatch(rf"opc\.tcp://127\.0\.0\.1:[1-9]\d*/plantwire/{code}", url)
        async with Client(url, timeout=5) as client:
            assert [e.EndpointUrl for e in await client.get_endpoints()] == [url]
            idx = await client.get_namespace_index(NAMESPACE_URI)
            obj = await client.nodes.objects.get_child(f"{idx}:{code}")
            names = [(await n.read_browse_name()).Name for n in await obj.get_children()]
            assert names == TAGS
            assert {t: VARIANT_TYPES[t] for t in CORE_TYPES} == CORE_TYPES
            for tag in TAGS:
                node = await tag_node(client, code, tag)
                assert await node.read_data_type_as_variant_type() == VARIANT_TYPES[tag]
                dv = await node.read_data_value()
                assert dv.Value is not None and dv.Value.VariantType == VARIANT_TYPES[tag]
                written = [(r.value, r.ts_ms) for r in fleet.truth.values(code, tag)]
                assert (dv.Value.Value, to_ms(dv.SourceTimestamp)) in written
                assert to_ms(dv.ServerTimestamp) == to_ms(dv.SourceTimestamp)
                assert written[0][1] == fleet.t0_ms  # initial value before the first tick
    states = fleet.truth.states()
    assert {s.machine for s in states if s.ts_ms == fleet.t0_ms} == set(CODES)


class Collector:
    """Subscription handler: every notification as (value, source ms, server ms) per node."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[Any, int, int]]] = {}

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        dv = data.monitored_item.Value
        key = str(node.nodeid.Identifier)
        self.got.setdefault(key, []).append(
            (val, to_ms(dv.SourceTimestamp), to_ms(dv.ServerTimestamp))
        )


async def test_subscribers_get_exactly_the_recorded_truth() -> None:
    truth = TruthRecorder()
    async with run_fleet(SCENARIO, base_port=0, truth=truth) as fleet:
        collectors: dict[str, Collector] = {}
        async with (
            Client(fleet.endpoints["SIM-A"], timeout=5) as ca,
            Client(fleet.endpoints["SIM-B"], timeout=5) as cb,
        ):
            before_ms = round(time.time() * 1000)
            for code, client in (("SIM-A", ca), ("SIM-B", cb)):
                collectors[code] = Collector()
                sub = await client.create_subscription(50, collectors[code])
                nodes = [await tag_node(client, code, tag) for tag in TAGS]
                await sub.subscribe_data_change(
                    nodes, queuesize=100, sampling_interval=ua.Double(0)
                )
            after_ms = round(time.time() * 1000)
            await asyncio.sleep(3.0)
            end_ms = round(time.time() * 1000)
            await asyncio.sleep(0.5)  # let notifications in flight arrive

    changes = 0
    for code in CODES:
        for tag in TAGS:
            got = collectors[code].got.get(f"{code}.{tag}", [])
            assert got, f"{code}.{tag}: no notification"
            assert all(src == srv for _, src, srv in got)
            received = [(v, src) for v, src, _ in got]
            written = [(r.value, r.ts_ms) for r in truth.values(code, tag)]
            assert received[0] in written, f"{code}.{tag}: {received[0]} never written"
            start = written.index(received[0])
            # the first notification is the value current when the subscription was made
            assert written[start][1] <= after_ms
            assert start + 1 == len(written) or written[start + 1][1] >= before_ms - 200
            # then every later write, in order, with its timestamp, and nothing else
            assert received == written[start : start + len(received)], f"{code}.{tag}"
            due = [w for w in written[start:] if w[1] <= end_ms]
            assert len(received) >= len(due), f"{code}.{tag}: missing {due[len(received) :]}"
            changes += len(received) - 1
    assert changes >= 6  # segments of 1-2 s and 1 s spindle redraws over 3 s


async def test_busy_port_fails_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            async with run_fleet(SCENARIO, base_port=port):
                pytest.fail("the fleet started on a busy port")
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in tasks if t.get_name().startswith("plantwire-sim")]
