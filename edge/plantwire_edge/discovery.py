"""``plantwire edge discover``: browse an OPC UA server and write a gateway config skeleton.

Every variable under the Objects folder (outside the standard namespace 0) becomes a tag
addressed by namespace URI, with the Sparkplug datatype matching its OPC UA data type. When
the server has a single top-level object, it is taken as the device (its browse name is the
device id) and metric names are the browse paths below it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds

DATATYPES: dict[int, str] = {
    ObjectIds.Boolean: "Boolean",
    ObjectIds.SByte: "Int8",
    ObjectIds.Byte: "UInt8",
    ObjectIds.Int16: "Int16",
    ObjectIds.UInt16: "UInt16",
    ObjectIds.Int32: "Int32",
    ObjectIds.UInt32: "UInt32",
    ObjectIds.Int64: "Int64",
    ObjectIds.UInt64: "UInt64",
    ObjectIds.Float: "Float",
    ObjectIds.Double: "Double",
    ObjectIds.String: "String",
    ObjectIds.LocalizedText: "String",
    ObjectIds.Enumeration: "Int32",
    ObjectIds.DateTime: "DateTime",
    ObjectIds.UtcTime: "DateTime",
}
HINTS = (
    (
        re.compile(r"operationmode|controllermode|machinemode|mode$", re.I),
        "opc40501/MachineOperationMode, opc40502/CncOperationMode, mtconnect/ControllerMode, "
        "euromap83/MachineMode",
    ),
    (
        re.compile(r"programstatus|execution|channelstatus", re.I),
        "opc40502/CncChannelProgramStatus, opc40502/CncChannelStatus, mtconnect/Execution",
    ),
)


@dataclass(frozen=True, slots=True)
class Found:
    path: tuple[str, ...]  # browse names below Objects
    node: str  # nsu=<uri>;<id>
    datatype: str | None  # None: not a scalar the gateway can publish
    opc_type: str


async def browse(
    endpoint: str, *, max_depth: int = 8, max_nodes: int = 10_000, timeout: float = 10.0
) -> tuple[list[Found], str]:
    """Variables below Objects, and the server's application name."""
    client = Client(endpoint, timeout=timeout)
    await client.connect()
    try:
        namespaces: list[str] = await client.get_namespace_array()
        found: list[Found] = []
        pending: list[tuple[Any, tuple[str, ...]]] = [(client.nodes.objects, ())]
        seen = 0
        while pending and seen < max_nodes:
            parent, path = pending.pop(0)
            for child in await parent.get_children():
                nodeid = child.nodeid
                if nodeid.NamespaceIndex == 0:
                    continue
                seen += 1
                name = (await child.read_browse_name()).Name
                node_class = await child.read_node_class()
                here = (*path, name)
                if node_class == ua.NodeClass.Variable:
                    found.append(await _variable(child, here, namespaces))
                container = node_class in (ua.NodeClass.Object, ua.NodeClass.Variable)
                if container and len(here) < max_depth:
                    pending.append((child, here))
        try:
            product = await client.nodes.server.get_child(
                ["0:ServerStatus", "0:BuildInfo", "0:ProductName"]
            )
            server_name = str(await product.read_value())
        except Exception:  # noqa: BLE001 - optional information
            server_name = ""
        return found, server_name
    finally:
        await client.disconnect()


async def _variable(node: Any, path: tuple[str, ...], namespaces: list[str]) -> Found:
    nodeid = node.nodeid
    identifier = nodeid.to_string().split(";", 1)[-1]
    address = f"nsu={namespaces[nodeid.NamespaceIndex]};{identifier}"
    try:
        dtype = await node.read_data_type()
        rank = await node.read_value_rank()
    except Exception:  # noqa: BLE001 - a node we cannot read is listed without a type
        return Found(path, address, None, "unreadable")
    opc_type = dtype.to_string()
    datatype = DATATYPES.get(dtype.Identifier) if dtype.NamespaceIndex == 0 else None
    if rank not in (-1, -3):  # arrays are not published
        datatype = None
    return Found(path, address, datatype, opc_type)


def _device_id(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:64]
    return cleaned or "DEVICE-1"


def skeleton(endpoint: str, found: list[Found], server_name: str = "") -> str:
    """A gateway config (TOML) reading the variables in ``found``."""
    roots = {f.path[0] for f in found if len(f.path) > 1}
    single_root = len(roots) == 1 and all(len(f.path) > 1 for f in found)
    device = next(iter(roots)) if single_root else (server_name or endpoint.rsplit("/", 1)[-1])
    q = json.dumps
    lines = [
        f"# plantwire edge gateway config, discovered from {endpoint}",
        f"# on {datetime.now(UTC).isoformat(timespec='seconds')}. Check the metric names, add",
        "# mapping tables (map = ...) for mode and execution tags, then run",
        "# 'plantwire edge check' on this file.",
        'group_id = "MY-ENTERPRISE"  # Sparkplug group id = your enterprise code',
        'edge_node_id = "GW1"  # this gateway',
        'mqtt_url = "mqtt://127.0.0.1:1883"  # or set PLANTWIRE_EDGE_MQTT_URL',
        'primary_host_id = "plantwire"',
        "",
        "[buffer]",
        'path = "plantwire-edge-buffer.db"  # durable store-and-forward, next to this file',
        "",
        "[http]",
        'listen = "127.0.0.1:9102"  # /metrics and /healthz',
        "",
        "[[devices]]",
        'kind = "opcua"',
        f"device_id = {q(_device_id(device))}",
        f"endpoint = {q(endpoint)}",
        '# security_policy = "Basic256Sha256"; security_mode = "SignAndEncrypt"',
        '# certificate = "gateway-cert.der"; private_key = "gateway-key.pem"',
        '# username = "..."; password = "${OPCUA_PASSWORD}"',
    ]
    skipped = []
    for f in found:
        if f.datatype is None:
            skipped.append(f)
            continue
        metric = "/".join(f.path[1:] if single_root else f.path)
        lines += [
            "[[devices.tags]]",
            f"node = {q(f.node)}",
            f"metric = {q(metric)}",
            f"datatype = {q(f.datatype)}",
        ]
        for pattern, tables in HINTS:
            if pattern.search(f.path[-1]):
                lines.append(f"# map = one of: {tables}")
                break
    if skipped:
        lines += ["", "# not published (arrays, structures or unreadable):"]
        lines += [f"#   {'/'.join(f.path)}  {f.node}  ({f.opc_type})" for f in skipped]
    return "\n".join(lines) + "\n"
