"""Modbus TCP servers of simulated legacy machines (pymodbus), one server per machine.

Each machine answers on its own port with its ``unit_id`` and the register map of
:mod:`plantwire_sim.legacy`. The served register image is what the interface shows; a read
copies it into pymodbus' device memory, so every read sees the latest values (or exception 04,
slave device failure, under the ``bad_status`` fault). Each read of the machine's execution
register is reported to ``on_state_read`` (the factory's :mod:`plantwire_sim.polls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from plantwire_bus.state import EXECUTION_METRIC

from .endpoint import Endpoint
from .legacy import TABLE_SIZES, RegisterImage
from .native import Profile, TagValue
from .params import LegacyParams
from .scenario import Machine

log = logging.getLogger(__name__)

_TABLE_OF_FUNCTION = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}


class ModbusMachine(Endpoint):
    """A legacy machine's Modbus TCP server."""

    protocol = "modbus"

    def __init__(self, machine: Machine, profile: Profile, host: str, port: int) -> None:
        super().__init__(machine, profile)
        params = machine.params
        if not isinstance(params, LegacyParams):
            raise ValueError(f"machine {machine.code}: Modbus needs the legacy profile")
        self.unit_id = params.unit_id
        self.host = host
        self.port = port
        self.served = RegisterImage(params.word_order, params.byte_order)
        self.server: ModbusTcpServer | None = None
        self._down = False
        self._held: socket.socket | None = None  # the port, held while the server is down
        self.on_state_read: Callable[[], None] | None = None
        state = next(t for t in profile.tags if t.metric == EXECUTION_METRIC)
        self._state_at = (state.table, state.address)
        self.device = SimDevice(
            id=self.unit_id,
            simdata=(
                [SimData(0, count=TABLE_SIZES["coil"], values=False, datatype=DataType.BITS)],
                [SimData(0, count=TABLE_SIZES["discrete"], values=False, datatype=DataType.BITS)],
                [SimData(0, count=TABLE_SIZES["holding"], datatype=DataType.REGISTERS)],
                [SimData(0, count=TABLE_SIZES["input"], datatype=DataType.REGISTERS)],
            ),
            action=self._on_access,
        )

    async def _on_access(
        self,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if "bad_status" in self.faults:
            return ExcCodes.DEVICE_FAILURE
        table = _TABLE_OF_FUNCTION.get(function_code)
        if table is not None:
            words = self.served.tables[table]
            registers[start : start + len(words)] = words
            at_table, at = self._state_at
            if table == at_table and address <= at < address + count and self.on_state_read:
                self.on_state_read()
        return None

    async def show(self, ts_ms: int, values: dict[str, TagValue]) -> None:
        for tag, value in values.items():
            self.served.set(self.specs[tag], value)

    async def start(self) -> None:
        self._release()
        server = ModbusTcpServer(self.device, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way
            raise OSError(
                f"Modbus server {self.code} cannot listen on {self.host}:{self.port}"
            ) from exc
        self.server = server
        if self.port == 0:
            listener = cast(asyncio.Server, server.transport)
            self.port = int(listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._release()
        server, self.server = self.server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def fault_on(self, kind: str, ts_ms: int) -> None:
        if kind == "restart":
            self._down = True
            await self.stop()
            self._hold()
        elif kind == "drop":
            if self.server is not None:
                for connection in list(self.server.active_connections.values()):
                    with contextlib.suppress(Exception):
                        connection.close()
        else:
            await super().fault_on(kind, ts_ms)

    async def fault_off(self, kind: str, ts_ms: int) -> None:
        if kind == "restart" and self._down:
            self._down = False
            try:
                await self.start()
            except OSError as exc:
                log.warning("%s", exc)
        elif kind not in ("restart", "drop"):
            await super().fault_off(kind, ts_ms)

    def _hold(self) -> None:
        """Keep the port of a server that is down bound, not listening: a gateway's
        connection is refused, as by a machine that is off, and no other process (nor the
        gateway's own connection, as its local port: a TCP self-connect that reads its own
        request back) takes the port meanwhile."""
        held = socket.socket()
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the server binds it again
        try:
            held.bind((self.host, self.port))
        except OSError as exc:
            held.close()
            log.warning("%s: cannot hold port %d while down: %s", self.code, self.port, exc)
            return
        self._held = held

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def describe(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "unit_id": self.unit_id}
