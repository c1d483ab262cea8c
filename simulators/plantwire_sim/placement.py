"""Where a scenario's simulators listen: OPC UA hosts, Modbus ports, MQTT topics.

The same plan serves ``sim run`` (which binds the ports) and ``sim gateway-config`` (which only
prints where they will be), so both agree for the same ``--base-port``. With ``base_port`` 0
the OS picks free ports when the simulators start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .opcua_host import endpoint_url
from .scenario import Enterprise, Machine, Scenario, Site

PROTOCOLS = frozenset({"opcua", "modbus", "mqtt"})
"""Protocols a simulated machine can speak."""


def topic_of(prefix: str, enterprise: str, site: str, code: str) -> str:
    """The topic a simulated MQTT device publishes to."""
    return f"{prefix}/{enterprise}/{site}/{code}"


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    """Where a simulated Modbus machine answers."""

    host: str
    port: int
    unit_id: int


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One OPC UA server and the machines it serves."""

    path: str
    port: int
    machines: tuple[str, ...]


@dataclass
class Placement:
    """Every simulated machine of a run, in scenario order, and where it is served."""

    host: str
    machines: list[tuple[Enterprise, Site, Machine]] = field(default_factory=list)
    opcua: list[HostPlan] = field(default_factory=list)
    modbus_ports: dict[str, int] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)

    def endpoints(self) -> dict[str, str]:
        """Machine code -> OPC UA endpoint URL (ports as planned)."""
        return {
            code: endpoint_url(self.host, h.port, h.path) for h in self.opcua for code in h.machines
        }

    def modbus(self) -> dict[str, ModbusAddress]:
        """Machine code -> Modbus address (ports as planned)."""
        unit = {m.code: getattr(m.params, "unit_id", 1) for _, _, m in self.machines}
        return {
            code: ModbusAddress(self.host, port, unit[code])
            for code, port in self.modbus_ports.items()
        }


def plan(
    scenario: Scenario,
    protocols: frozenset[str] = PROTOCOLS,
    host: str = "127.0.0.1",
    base_port: int = 0,
    layout: str | None = None,
    topic_prefix: str = "plant",
) -> Placement:
    """Place the machines of ``scenario`` speaking one of ``protocols``.

    OPC UA hosts get ports ``base_port``, ``base_port + 1``, ... in scenario order, then the
    Modbus machines follow; all ports are 0 when ``base_port`` is 0.
    """
    unknown = set(protocols) - PROTOCOLS
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}; known: {sorted(PROTOCOLS)}")
    layout = layout or scenario.simulation.opcua_layout
    if layout not in ("machine", "site", "fleet"):
        raise ValueError(f"unknown OPC UA layout {layout!r}: machine, site or fleet")
    placement = Placement(host)
    placement.machines = [(e, s, m) for e, s, m in scenario.machines() if m.protocol in protocols]
    groups: dict[str, list[str]] = {}
    for e, s, m in placement.machines:
        if m.protocol == "opcua":
            path = {"machine": m.code, "site": f"{e.code}/{s.code}", "fleet": "fleet"}[layout]
            groups.setdefault(path, []).append(m.code)
        elif m.protocol == "mqtt":
            placement.topics[m.code] = topic_of(topic_prefix, e.code, s.code, m.code)
    port = base_port

    def take() -> int:
        nonlocal port
        if base_port == 0:
            return 0
        port += 1
        if port - 1 > 65535:
            raise ValueError(f"not enough ports from {base_port} for this scenario")
        return port - 1

    placement.opcua = [HostPlan(path, take(), tuple(codes)) for path, codes in groups.items()]
    placement.modbus_ports = {
        m.code: take() for _, _, m in placement.machines if m.protocol == "modbus"
    }
    return placement
