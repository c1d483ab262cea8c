"""The edge gateway config that reads a simulated site: devices, tags, registers, fields.

``plantwire demo`` and the end-to-end tests use it; ``plantwire sim gateway-config`` prints it
so a user can point a gateway at ``plantwire sim run``. Devices follow the gateway's contract:
``kind = "opcua"`` (tags by ``nsu=`` node id), ``kind = "modbus"`` (register map) and
``kind = "mqtt"`` (JSON fields by path). ``protocols`` selects which kinds are emitted;
``metrics = "core"`` reads each profile's core tags (state, the production counters OEE
needs and the main value), ``"all"`` every tag the simulator exposes.

Modbus devices (which carry no timestamps and are polled) are polled every
:func:`poll_interval_ms` of simulated time: a gateway on the simulator's clock polls in that
clock's time (down to its floor of 10 wall ms between polls, :func:`polled_every_ms`), so one
config serves a run at any speed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w

from .behaviour import profile_of
from .native import TagSpec
from .opcua_host import NAMESPACE_URI, node_identifier
from .params import LegacyParams
from .placement import ModbusAddress
from .scenario import Enterprise, Machine, Site


def gateway_config(
    enterprise: Enterprise,
    site: Site,
    endpoints: Mapping[str, str],
    mqtt_url: str,
    primary_host_id: str | None = "plantwire",
    *,
    protocols: frozenset[str] = frozenset({"opcua"}),
    modbus: Mapping[str, ModbusAddress] | None = None,
    mqtt_topics: Mapping[str, str] | None = None,
    device_broker_url: str | None = None,
    metrics: str = "core",
) -> dict[str, Any]:
    """A gateway config (as the TOML document's data) for the simulated machines of ``site``.

    ``endpoints`` maps machine codes to OPC UA endpoint URLs, ``modbus`` to Modbus addresses
    and ``mqtt_topics`` to the topics MQTT devices publish on ``device_broker_url`` (default:
    ``mqtt_url``, the broker the gateway publishes Sparkplug to). Machines missing from these
    maps, or speaking a protocol not in ``protocols``, are left out.
    """
    if metrics not in ("core", "all"):
        raise ValueError(f"metrics must be 'core' or 'all', not {metrics!r}")
    devices: list[dict[str, Any]] = []
    for machine in site.machines:
        if machine.protocol not in protocols:
            continue
        if machine.protocol == "opcua" and machine.code in endpoints:
            devices.append(_opcua(machine, endpoints[machine.code], metrics))
        elif machine.protocol == "modbus" and modbus and machine.code in modbus:
            devices.append(_modbus(machine, modbus[machine.code], metrics))
        elif machine.protocol == "mqtt" and mqtt_topics and machine.code in mqtt_topics:
            broker = device_broker_url or mqtt_url
            devices.append(_mqtt(machine, broker, mqtt_topics[machine.code], metrics))
    config: dict[str, Any] = {
        "group_id": enterprise.code,
        "edge_node_id": site.edge_node,
        "mqtt_url": mqtt_url,
    }
    config["primary_host_id"] = primary_host_id or ""  # "" = publish without a primary host
    config["devices"] = devices
    return config


def _specs(machine: Machine, metrics: str) -> list[TagSpec]:
    return [t for t in profile_of(machine).tags if metrics == "all" or t.core]


def _point(spec: TagSpec) -> dict[str, Any]:
    point: dict[str, Any] = {"metric": spec.metric, "datatype": spec.datatype}
    if spec.map is not None:
        point["map"] = spec.map
    if spec.override:
        point["override"] = list(spec.override)
    return point


def _opcua(machine: Machine, endpoint: str, metrics: str) -> dict[str, Any]:
    tags = [
        {
            "node": f"nsu={NAMESPACE_URI};s={node_identifier(machine.code, spec.name)}",
            **_point(spec),
        }
        for spec in _specs(machine, metrics)
    ]
    return {"kind": "opcua", "device_id": machine.code, "endpoint": endpoint, "tags": tags}


def _modbus(machine: Machine, address: ModbusAddress, metrics: str) -> dict[str, Any]:
    params = machine.params
    assert isinstance(params, LegacyParams)
    registers = []
    for spec in _specs(machine, metrics):
        register: dict[str, Any] = {
            "metric": spec.metric,
            "table": spec.table,
            "address": spec.address,
            "type": spec.type,
        }
        if spec.type != "bool":
            register["word_order"] = params.word_order
            register["byte_order"] = params.byte_order
        if spec.scale != 1.0:
            register["scale"] = spec.scale
        register["datatype"] = spec.datatype
        if spec.map is not None:
            register["map"] = spec.map
        registers.append(register)
    return {
        "kind": "modbus",
        "device_id": machine.code,
        "host": address.host,
        "port": address.port,
        "unit_id": address.unit_id,
        "poll_interval_ms": poll_interval_ms(machine),
        "timeout_s": 3.0,
        "registers": registers,
    }


MIN_POLL_MS = 10
"""The gateway's shortest wall time between two polls (``plantwire_edge.clock.POLL_FLOOR_S``)."""


POLLS_PER_SEGMENT = 8
"""A Modbus machine is polled at least this often during its shortest program segment."""


def poll_interval_ms(machine: Machine) -> int:
    """Simulated milliseconds between polls of a Modbus machine: its ``behaviour.sample_s``,
    shortened to resolve its shortest program segment (a polled state is only seen at polls:
    each change is seen up to one interval late), at least 100 ms."""
    simulated = machine.behaviour.sample_s * 1000
    if machine.program:
        shortest = min(segment.seconds for segment in machine.program) * 1000
        simulated = min(simulated, shortest / POLLS_PER_SEGMENT)
    return round(max(100.0, simulated))


def polled_every_ms(machine: Machine, speed: float) -> int:
    """Simulated milliseconds between two polls of a Modbus machine by a gateway on a clock at
    ``speed``: :func:`poll_interval_ms`, or the gateway's floor of ``MIN_POLL_MS`` wall
    milliseconds when that is longer (at 600x, 6 simulated seconds)."""
    if not speed > 0:
        raise ValueError(f"speed must be > 0, not {speed}")
    return max(poll_interval_ms(machine), round(MIN_POLL_MS * speed))


def _mqtt(machine: Machine, broker_url: str, topic: str, metrics: str) -> dict[str, Any]:
    profile = profile_of(machine)
    fields = [{"path": spec.name, **_point(spec)} for spec in _specs(machine, metrics)]
    device: dict[str, Any] = {
        "kind": "mqtt",
        "device_id": machine.code,
        "broker_url": broker_url,
        "topic": topic,
        "timestamp_path": getattr(profile, "timestamp_path", "ts"),
        "timestamp_format": getattr(profile, "timestamp_format", "epoch_ms"),
        # the device speaks at least this often (simulated seconds, as is the gateway's clock):
        # three missed heartbeats and the gateway takes it offline, stamped when the first
        # missed one was due; at any speed, since the gateway asks the broker before it
        # concludes a silence (plantwire_edge.mqtt_device)
        "interval_s": interval_s(machine),
    }
    device["fields"] = fields
    return device


def interval_s(machine: Machine) -> float:
    """Simulated seconds between two messages of an MQTT device, at most."""
    every = machine.behaviour.publish_every_s
    if getattr(profile_of(machine), "periodic", False):
        every = min(every, machine.behaviour.sample_s)
    return every


def to_toml(config: dict[str, Any]) -> str:
    """Render a gateway config as TOML."""
    header = "# plantwire edge gateway config (generated for simulated machines)\n"
    return header + tomli_w.dumps(config)
