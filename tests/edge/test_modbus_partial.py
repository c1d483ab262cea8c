"""A Modbus device that answers part of its register map, slowly, then falls silent (the
session is lost in the middle of a poll), then answers all of it (what a gateway polling a
port another process took may see): the registers the lost poll did not reach are read on
the next session, and every DDATA resolves, as a host resolves it, to a birth with all its
aliases. A device that refuses a register for a while (busy) has it read once it answers."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from plantwire_bus.mosquitto import free_port
from plantwire_edge.config import EdgeConfig

from .conftest import probe_on, running, unresolved

Answers = dict[int, float | None]  # address -> delay before the answer (s), None: silent


@asynccontextmanager
async def partial_server(
    port: int, sessions: list[Answers], busy: dict[int, int] | None = None
) -> AsyncIterator[list[int]]:
    """A minimal Modbus TCP responder for holding registers, answering reads at address
    ``a`` with ``a + 7`` per the connection's entry of ``sessions`` (the last entry for the
    later ones); a read at an address of ``busy`` is answered with exception code 6 (device
    busy) that many times first. Yields the list of connections it took."""
    taken: list[int] = []
    busy = busy if busy is not None else {}  # counted down: the caller sees what was refused

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        taken.append(len(taken))
        answers = sessions[min(len(taken), len(sessions)) - 1]
        try:
            while True:
                tid, pid, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                fc, address, count = struct.unpack(
                    ">BHH", (await reader.readexactly(length - 1))[:5]
                )
                delay = answers.get(address)
                if fc != 3 or delay is None:
                    continue  # silent: the client's "No response received"
                await asyncio.sleep(delay)
                if busy.get(address, 0) > 0:
                    busy[address] -= 1
                    pdu = struct.pack(">BB", fc | 0x80, 6)
                    writer.write(struct.pack(">HHHB", tid, pid, len(pdu) + 1, unit) + pdu)
                    await writer.drain()
                    continue
                data = struct.pack(f">{count}H", *range(address + 7, address + 7 + count))
                pdu = struct.pack(">BB", fc, len(data)) + data
                writer.write(struct.pack(">HHHB", tid, pid, len(pdu) + 1, unit) + pdu)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield taken
    finally:
        server.close()
        await server.wait_closed()


async def test_registers_a_lost_poll_did_not_reach_are_read_on_the_next_session(
    mqtt_url: str, group: str
) -> None:
    port = free_port()
    cfg = _config(group, mqtt_url, port, {"A": 0, "B": 10, "C": 20})
    # first session: A at once, B a few batches later, C never (the session is lost);
    # then every register at once
    first: Answers = {0: 0.0, 10: 0.2, 20: None}
    later: Answers = {0: 0.0, 10: 0.0, 20: 0.0}
    async with partial_server(port, [first, later]) as taken:
        async with probe_on(mqtt_url, group) as probe, running(cfg):
            await probe.wait_for(
                lambda: {("C", 27), ("B", 17)} <= {(s.metric, s.value) for s in probe.values()},
                "values of B and C",
            )
            await asyncio.sleep(0.3)
        assert len(taken) >= 2
    assert unresolved(probe, "OLD") == []


def _config(
    group: str, mqtt_url: str, port: int, addresses: dict[str, int], max_gap: int = 0
) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "GW1",
            "mqtt_url": mqtt_url,
            "primary_host_id": "",
            "batch_ms": 20,
            "devices": [
                {
                    "kind": "modbus",
                    "device_id": "OLD",
                    "host": "127.0.0.1",
                    "port": port,
                    "poll_interval_ms": 50,
                    "timeout_s": 0.5,
                    "max_gap": max_gap,
                    "reconnect_max_s": 0.2,
                    "registers": [
                        {"metric": m, "table": "holding", "address": a, "type": "uint16"}
                        for m, a in addresses.items()
                    ],
                }
            ],
        }
    )


async def test_a_register_refused_for_a_while_is_read_once_it_answers(
    mqtt_url: str, group: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    cfg = _config(group, mqtt_url, port, {"A": 0, "B": 5, "C": 10}, max_gap=10)
    every: Answers = {0: 0.0, 5: 0.0, 10: 0.0}
    # the batched read at 0 (A to C) is refused once, then B's single read five times: B is
    # left out of the poll, asked again, and answers on the sixth
    busy = {0: 1, 5: 5}
    caplog.set_level(logging.INFO, "plantwire_edge.modbus")
    async with partial_server(port, [every], busy) as taken:
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            await probe.wait_for(
                lambda: (
                    {("A", 7), ("B", 12), ("C", 17)}
                    <= {(s.metric, s.value) for s in probe.values()}
                ),
                "values of A, B and C",
            )
            assert gateway.adapters[0].status.bad_points == {}
        assert taken == [0]  # one session throughout: B came back without a reconnect
    assert busy == {0: 0, 5: 0}
    said = [r.getMessage() for r in caplog.records]
    assert "OLD: bad point holding:5: device answered with exception code 6" in said
    assert "OLD: holding:5 answers again" in said
    assert unresolved(probe, "OLD") == []


async def test_a_device_whose_first_poll_is_slow_is_born_once(mqtt_url: str, group: str) -> None:
    """Values of the first poll that the gateway sends before the poll ends wait for the
    device's birth: they are not sent as the backlog of a device that is gone (a birth and a
    death at once, then the real birth)."""
    port = free_port()
    cfg = _config(group, mqtt_url, port, {"A": 0, "B": 20, "C": 40})
    slow: Answers = {0: 0.0, 20: 0.3, 40: 0.3}  # batches of 20 ms go out meanwhile
    async with partial_server(port, [slow]), probe_on(mqtt_url, group) as probe, running(cfg):
        await probe.wait_for(
            lambda: (
                {("A", 7), ("B", 27), ("C", 47)} <= {(s.metric, s.value) for s in probe.values()}
            ),
            "values of A, B and C",
        )
        await asyncio.sleep(0.3)
        births, deaths = probe.payloads("DBIRTH", "OLD"), probe.payloads("DDEATH", "OLD")
    assert (len(births), deaths) == (1, [])  # (the gateway's stop ends it with a DDEATH)
    assert {m.name: m.value for m in births[0].metrics} == {"A": 7, "B": 27, "C": 47}
    assert unresolved(probe, "OLD") == []
