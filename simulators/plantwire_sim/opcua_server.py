"""OPC UA side of the simulated factory, and ``run_fleet``: the OPC UA machines alone.

Each machine with ``protocol = "opcua"`` is an object ``{code}`` in namespace
:data:`NAMESPACE_URI` with its profile's variables ``ns=<idx>;s={code}.{Tag}``; with the
default ``machine`` layout it has its own server at ``opc.tcp://{host}:{port}/plantwire/{code}``
(security None, anonymous). Every write carries the simulated time as SourceTimestamp and
ServerTimestamp and is recorded as ground truth. See :mod:`plantwire_sim.opcua_host` for the
layouts and :mod:`plantwire_sim.factory` for the scheduler.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .factory import Factory, run_factory
from .opcua_host import NAMESPACE_URI, endpoint_url, ms_to_datetime, node_identifier
from .scenario import Scenario
from .truth import TruthRecorder

__all__ = [
    "NAMESPACE_URI",
    "Fleet",
    "endpoint_url",
    "ms_to_datetime",
    "node_identifier",
    "run_fleet",
]

Fleet = Factory
"""The running simulators (historical name)."""


@asynccontextmanager
async def run_fleet(
    scenario: Scenario,
    host: str = "127.0.0.1",
    base_port: int = 4840,
    truth: TruthRecorder | None = None,
    *,
    seed: int | None = None,
    speed: float = 1.0,
    start_ms: int | None = None,
    layout: str | None = None,
) -> AsyncIterator[Factory]:
    """Serve every ``opcua`` machine of ``scenario`` until the block exits.

    Servers get ports ``base_port``, ``base_port + 1``, ... in scenario order, or free ports
    picked by the OS when ``base_port`` is 0. ``seed`` overrides the scenario seed. Without a
    ``truth`` recorder an in-memory one is made (``fleet.truth``). A machine that failed is
    re-raised as RuntimeError on exit. :func:`~plantwire_sim.factory.run_factory` starts the
    Modbus and MQTT machines too.
    """
    async with run_factory(
        scenario,
        host,
        base_port,
        truth,
        seed=seed,
        protocols=frozenset({"opcua"}),
        speed=speed,
        start_ms=start_ms,
        layout=layout,
    ) as fleet:
        yield fleet
