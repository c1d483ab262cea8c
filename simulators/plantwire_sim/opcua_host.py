"""OPC UA servers of simulated machines: one asyncua server hosting one or many machines.

A host listens at ``opc.tcp://{host}:{port}/plantwire/{path}`` (security None, anonymous) and
holds, in namespace :data:`NAMESPACE_URI`, an object ``{code}`` under Objects per machine with
the profile's variables ``ns=<idx>;s={code}.{Tag}``. With the ``machine`` layout every machine
has its own host (path = machine code); ``site`` gives one host per site
(``{enterprise}/{site}``) and ``fleet`` one for the whole scenario (``fleet``): the way to
serve hundreds of machines from one process, since every asyncua server costs ~20 MB and its
own copy of the standard address space.

Every value carries the simulated time as SourceTimestamp and ServerTimestamp. Values written
are never changed afterwards, so the server's per-subscriber deep copy of each value is
skipped (:class:`_SharedValue`): that copy dominated the cost of a change with many monitored
items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from asyncua import ua
from asyncua.server.server import Server

from .endpoint import Endpoint
from .native import Profile, TagValue
from .opcua_space import PrebuiltInternalServer, standard_nodes
from .scenario import Machine

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:plantwire:sim:cnc"
"""Namespace of the machine objects and their variables (all profiles)."""
BAD_STATUS = ua.StatusCode(ua.UInt32(0x808C0000))
"""BadSensorFailure: status of every variable of a machine under the ``bad_status`` fault."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO: dict[str, Any] = {"Double": 0.0, "String": "", "Boolean": False}


def endpoint_url(host: str, port: int, path: str) -> str:
    """The endpoint URL of a host (``path`` is the machine code in the ``machine`` layout)."""
    return f"opc.tcp://{host}:{port}/plantwire/{path}"


def node_identifier(machine_code: str, tag: str) -> str:
    """String identifier of a tag's variable, e.g. ``CNC-01.SpindleSpeed``."""
    return f"{machine_code}.{tag}"


def ms_to_datetime(ts_ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime, exactly."""
    return _EPOCH + timedelta(milliseconds=ts_ms)


class _SharedValue(ua.DataValue):
    """A DataValue that is never mutated after the write, so copies may share it."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedValue:
        return self


class OpcUaHost:
    """One asyncua server and the machines it serves."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.endpoint = endpoint_url(host, port, path)
        self.server: Server | None = None
        self.namespace_index = -1
        self.machines: list[OpcUaMachine] = []
        self._listening = False
        self._down = 0
        self._transition: asyncio.Task[None] | None = None

    def add(self, machine: Machine, profile: Profile) -> OpcUaMachine:
        m = OpcUaMachine(self, machine, profile)
        self.machines.append(m)
        return m

    async def init(self) -> None:
        """Build the server and the address space of every machine; nothing listens yet."""
        nodes = await asyncio.to_thread(standard_nodes)
        server = Server(iserver=PrebuiltInternalServer(nodes))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"plantwire simulated machines {self.path}")
        await server.set_application_uri(f"urn:plantwire:sim:host:{self.path}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.set_force_server_timestamp(False)
        idx = await server.register_namespace(NAMESPACE_URI)
        for m in self.machines:
            obj = await server.nodes.objects.add_object(
                ua.NodeId(ua.String(m.code), ua.Int16(idx)), ua.QualifiedName(m.code, idx)
            )
            for spec in m.profile.tags:
                vtype = getattr(ua.VariantType, spec.opcua)
                node = await obj.add_variable(
                    ua.NodeId(ua.String(node_identifier(m.code, spec.name)), ua.Int16(idx)),
                    ua.QualifiedName(spec.name, idx),
                    ua.Variant(_ZERO.get(spec.opcua, 0), vtype),
                )
                m.nodes[spec.name] = (node.nodeid, vtype)
        self.server = server
        self.namespace_index = idx

    def _server(self) -> Server:
        if self.server is None:
            raise RuntimeError(f"OPC UA host {self.path}: not initialised")
        return self.server

    async def start(self) -> None:
        """Listen (again); with port 0 the OS picks the port, kept for restarts."""
        server = self._server()
        await server.start()
        self._listening = True
        if self.port == 0 and server.bserver is not None:
            self.port = server.bserver.port
            self.endpoint = endpoint_url(self.host, self.port, self.path)
            server.set_endpoint(self.endpoint)
            for edp in server.iserver.endpoints:
                edp.EndpointUrl = self.endpoint
                edp.Server.DiscoveryUrls = [self.endpoint]

    async def stop(self) -> None:
        """Stop listening; safe to call more than once."""
        if self._transition is not None:
            self._transition.cancel()
            await asyncio.gather(self._transition, return_exceptions=True)
        if self.server is not None and self._listening:
            self._listening = False
            await self.server.stop()

    def go_down(self) -> None:
        """A restart fault begins: stop the server (in the background)."""
        self._down += 1
        if self._down == 1:
            self._switch(self._stop_quietly())

    def come_up(self) -> None:
        """A restart fault ends: listen again on the same port."""
        self._down = max(0, self._down - 1)
        if self._down == 0:
            self._switch(self.start())

    async def settled(self) -> None:
        """Wait until the last stop or start is done (asyncua's stop with a client connected
        took up to a wall second, and the start waits for it)."""
        transition = self._transition
        if transition is not None:
            await asyncio.gather(asyncio.shield(transition), return_exceptions=True)

    def _switch(self, action: Any) -> None:
        previous = self._transition

        async def run() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await action
            except OSError as exc:  # e.g. the port was taken meanwhile
                log.warning("OPC UA host %s: %s", self.path, exc)

        self._transition = asyncio.create_task(run(), name=f"plantwire-sim opcua {self.path}")

    async def _stop_quietly(self) -> None:
        if self.server is not None and self._listening:
            self._listening = False
            await self.server.stop()
            await _forget_sessions(self.server)

    def drop_connections(self) -> None:
        """Cut every client connection; the server keeps listening."""
        if self.server is not None:
            for transport in list(self.server.iserver.asyncio_transports):
                with contextlib.suppress(Exception):
                    transport.close()


class OpcUaMachine(Endpoint):
    """One machine's variables on its host."""

    protocol = "opcua"

    def __init__(self, host: OpcUaHost, machine: Machine, profile: Profile) -> None:
        super().__init__(machine, profile)
        self.host = host
        self.nodes: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}

    @property
    def endpoint(self) -> str:
        return self.host.endpoint

    async def show(self, ts_ms: int, values: dict[str, TagValue]) -> None:
        server = self.host._server()
        when = cast(ua.DateTime, ms_to_datetime(self.faults.timestamp(ts_ms)))
        bad = "bad_status" in self.faults
        for tag, value in values.items():
            nodeid, vtype = self.nodes[tag]
            if bad:
                dv = _SharedValue(
                    ua.Variant(None, ua.VariantType.Null),
                    StatusCode=BAD_STATUS,
                    SourceTimestamp=when,
                    ServerTimestamp=when,
                )
            else:
                dv = _SharedValue(
                    ua.Variant(value, vtype), SourceTimestamp=when, ServerTimestamp=when
                )
            await server.write_attribute_value(nodeid, dv)

    async def fault_on(self, kind: str, ts_ms: int) -> None:
        if kind == "restart":
            self.host.go_down()
        elif kind == "drop":
            self.host.drop_connections()
        else:
            await super().fault_on(kind, ts_ms)

    async def fault_off(self, kind: str, ts_ms: int) -> None:
        if kind == "restart":
            self.host.come_up()
            # the server listens again at the fault's end on the simulated clock: simulated
            # time waits here (and then slows down) for a stop and start that take wall time
            await self.host.settled()
        elif kind != "drop":
            await super().fault_off(kind, ts_ms)

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint}


async def _forget_sessions(server: Server) -> None:
    """A restarted server has forgotten its sessions and subscriptions. asyncua's ``stop``
    keeps them in the process, and a client that resumed such a session after ``start``
    found its subscription there but never got another notification from it."""
    iserver = server.iserver
    subscriptions = list(iserver.subscription_service.subscriptions)
    if subscriptions:
        await iserver.subscription_service.delete_subscriptions(subscriptions)
    iserver._external_sessions.clear()  # asyncua keeps no public handle on them
