"""Fast OPC UA server start: asyncua's standard address space built once, copied per server.

Building the standard address space takes about 1.5 s of CPU per server; the simulators build
it once per process and give every server its own copy of the prebuilt nodes.
"""

from __future__ import annotations

import copy
import gc
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import cast

from asyncua import ua
from asyncua.server.address_space import AttributeValue, NodeData
from asyncua.server.internal_server import InternalServer
from asyncua.server.standard_address_space import standard_address_space

_template: dict[ua.NodeId, NodeData] | None = None
_template_lock = threading.Lock()
_IMMUTABLE = (
    int,
    float,
    str,
    bytes,
    bool,
    type(None),
    datetime,
    ua.NodeId,
    ua.LocalizedText,
    ua.QualifiedName,
)


def standard_nodes() -> dict[ua.NodeId, NodeData]:
    """A fresh copy of asyncua's standard address space (the template is built once)."""
    global _template
    with _template_lock:
        if _template is None:
            builder = InternalServer()
            fill = standard_address_space.fill_address_space  # untyped generated code
            cast("Callable[[object], None]", fill)(builder.node_mgt_service)
            _template = {nid: builder.aspace[nid] for nid in builder.aspace.keys()}  # noqa: SIM118
        template = _template
    was_enabled = gc.isenabled()
    gc.disable()  # ~300k small objects: collections would dominate the copy time
    try:
        return {nid: _copy_node(data) for nid, data in template.items()}
    finally:
        if was_enabled:
            gc.enable()


def _copy_node(data: NodeData) -> NodeData:
    """Copy what a server may change in place; share values asyncua only ever replaces."""
    node = NodeData(data.nodeid)
    for attr, attval in data.attributes.items():
        dv = attval.value
        if dv is not None and dv.Value is not None and not isinstance(dv.Value.Value, _IMMUTABLE):
            dv = copy.deepcopy(dv)  # lists (e.g. NamespaceArray) and structures
        copied = AttributeValue(dv)  # type: ignore[arg-type]
        copied.value_callback = attval.value_callback
        copied.value_setter = attval.value_setter
        node.attributes[attr] = copied
    node.references = [copy.copy(ref) for ref in data.references]
    node.call = data.call
    return node


class PrebuiltInternalServer(InternalServer):
    """An internal server whose standard address space is handed in, already built."""

    def __init__(self, nodes: dict[ua.NodeId, NodeData]) -> None:
        super().__init__()
        self._prebuilt = nodes

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        for nodeid, data in self._prebuilt.items():
            self.aspace[nodeid] = data
        self._prebuilt = {}
