"""Modbus TCP adapter: polls a register map in batched reads and reports what changed.

Registers close together are read in one request (see :mod:`plantwire_edge.registers`).
When the device answers a batched read with an exception (typically an illegal address in
the range), the batch is split into single reads, so one bad register is reported and left
out while the others keep flowing. A register the device refused is asked again every
``reconnect_max_s`` of the gateway's clock and at once on every new session (a device busy
or starting up refuses what it answers later); once it answers, it is polled with the rest
and no longer reported bad. Values carry the gateway's time of the read (Modbus has no
timestamps). A lost connection reports the device offline and reconnects with jittered
exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from plantwire_bus.runner import stopped_within
from plantwire_edge.clock import POLL_FLOOR_S, next_poll, wall_s
from plantwire_edge.devices import ModbusDevice, Register
from plantwire_edge.feed import Feed
from plantwire_edge.node import EdgeNode
from plantwire_edge.registers import Layout, Read, decode, plan_reads
from plantwire_edge.status import AdapterStatus, Throttle

log = logging.getLogger(__name__)

_READERS = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}


def layout_of(register: Register) -> Layout:
    return Layout(
        register.table,
        register.address,
        register.type,
        register.word_order,
        register.byte_order,
        register.bit,
    )


def label_of(register: Register) -> str:
    bit = f".{register.bit}" if register.bit is not None else ""
    return f"{register.table}:{register.address}{bit}"


class ModbusAdapter:
    def __init__(self, device: ModbusDevice, node: EdgeNode) -> None:
        self.device = device
        self.status = AdapterStatus(device.device_id, "modbus")
        self.connected = asyncio.Event()
        self.channel = node.channel(device.device_id)
        self.clock = node.clock
        self._throttle = Throttle()
        self.feeds = [
            Feed(self.channel, reg, label_of(reg), self.status, self._throttle)
            for reg in device.registers
        ]
        self.layouts = [layout_of(reg) for reg in device.registers]
        self.reads = plan_reads(self.layouts, device.max_gap)
        self._last: dict[int, Any] = {}
        self._error = ""
        self._refused: dict[int, float] = {}  # register index -> loop time it is asked again

    async def run(self, stop: asyncio.Event) -> None:
        dev = self.device
        delay = 0.5
        while not stop.is_set():
            client = AsyncModbusTcpClient(
                dev.host, port=dev.port, timeout=dev.timeout_s, retries=0, reconnect_delay=0
            )
            try:
                if not await client.connect():
                    raise ConnectionError(f"cannot connect to {dev.host}:{dev.port}")
                self.status.connects += 1
                self.status.set_state("connected")
                self.connected.set()
                self._refused = dict.fromkeys(self._refused, 0.0)  # asked again at once
                log.info(
                    "%s: connected to modbus://%s:%d (%d reads per poll)",
                    dev.device_id,
                    dev.host,
                    dev.port,
                    len(self.reads),
                )
                delay = 0.5
                await self._poll_forever(client, stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # report, back off, reconnect
                if not isinstance(exc, ModbusException | ConnectionError | OSError | TimeoutError):
                    log.exception("%s: unexpected error", dev.device_id)
                text = f"{type(exc).__name__}: {exc}"
                self.status.set_state("disconnected", text)
                self._throttle(log, "session", "%s: %s", dev.device_id, text)
            finally:
                client.close()
            self.connected.clear()
            self.channel.set_offline()
            self._last.clear()
            if stop.is_set():
                break
            self.status.reconnects += 1
            await stopped_within(stop, wall_s(self.clock, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, dev.reconnect_max_s)
        if self.status.state == "connected":
            self.status.set_state("disconnected")

    async def _poll_forever(self, client: AsyncModbusTcpClient, stop: asyncio.Event) -> None:
        """Poll every ``poll_interval_ms`` of the gateway's clock, at its rate now (at least
        ``POLL_FLOOR_S`` wall apart: see :mod:`plantwire_edge.clock`)."""
        interval_ms = self.device.poll_interval_ms
        loop = asyncio.get_running_loop()
        self.channel.set_connecting()  # the first poll's values wait for its birth
        await self.poll(client)
        self.channel.set_online([])
        due = next_poll(self.clock, interval_ms, None, loop.time())
        while not await stopped_within(stop, max(0.0, due - loop.time())):
            due = next_poll(self.clock, interval_ms, due, loop.time())
            await self.poll(client)

    async def poll(self, client: AsyncModbusTcpClient) -> None:
        """One pass over the register map, and over the refused registers due again. A pass
        cut short (the session lost mid-way) leaves the read plan and the refused registers as
        they were: the reads not reached are made on the next session."""
        loop = asyncio.get_running_loop()
        due = [i for i, at in self._refused.items() if at <= loop.time()]
        reads, self.reads = self.reads, []
        try:
            refused = await self._pass(client, reads + [self._single(i) for i in due])
        except BaseException:
            self.reads = reads
            raise
        self.reads.sort(key=lambda r: (r.table, r.address))
        for index in due:
            if index not in refused:
                del self._refused[index]
                label = self.feeds[index].label
                self.status.bad_points.pop(label, None)
                log.info("%s: %s answers again", self.device.device_id, label)
        if refused:
            again = loop.time() + wall_s(self.clock, self.device.reconnect_max_s, POLL_FLOOR_S)
            self._refused.update(dict.fromkeys(refused, again))

    def _single(self, index: int) -> Read:
        layout = self.layouts[index]
        return Read(layout.table, layout.address, layout.width, ((index, 0),))

    async def _pass(self, client: AsyncModbusTcpClient, reads: list[Read]) -> list[int]:
        """Make ``reads``, keeping those answered in the plan; the registers refused."""
        refused: list[int] = []
        for read in reads:
            words = await self._read(client, read)
            if words is not None:
                self.reads.append(read)
                self._report(read, words)
                continue
            if len(read.members) == 1:
                refused.append(read.members[0][0])
                self.status.bad(self.feeds[read.members[0][0]].label, self._error, log)
                continue
            log.info(
                "%s: %s read at %d failed; reading its %d values one by one",
                self.device.device_id,
                read.table,
                read.address,
                len(read.members),
            )
            for index, _ in read.members:
                single = self._single(index)
                words = await self._read(client, single)
                if words is None:
                    refused.append(index)
                    self.status.bad(self.feeds[index].label, self._error, log)
                else:
                    self.reads.append(single)
                    self._report(single, words)
        return refused

    async def _read(self, client: AsyncModbusTcpClient, read: Read) -> list[Any] | None:
        method = getattr(client, _READERS[read.table])
        response = await method(read.address, count=read.count, device_id=self.device.unit_id)
        if response.isError():
            code = getattr(response, "exception_code", None)
            self._error = f"device answered with exception code {code}"
            return None
        words: list[Any] = (
            response.bits if read.table in ("coil", "discrete") else (response.registers)
        )
        return words

    def _report(self, read: Read, words: list[Any]) -> None:
        now = self.clock.now_ms()
        last = self._last
        for index, offset in read.members:
            layout = self.layouts[index]
            raw = decode(layout, words[offset : offset + layout.width])
            register = self.device.registers[index]
            value: Any = raw
            if not isinstance(raw, bool) and (register.scale != 1.0 or register.offset != 0.0):
                value = raw * register.scale + register.offset
            if last.get(index, _UNSET) == value:
                continue
            last[index] = value
            self.feeds[index].put(value, None, now, now, now)


_UNSET = object()
