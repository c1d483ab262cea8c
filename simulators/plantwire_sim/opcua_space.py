"""Fast OPC UA server start: asyncua's standard address space built once, copied per server.

Building the standard address space takes 3-6 s of CPU; the simulators build it once per
process and give every server its own copy of the prebuilt nodes. The built template is also
kept on disk (:func:`cache_file`, keyed by the asyncua and Python versions), so that a new
simulator process reads it in well under a second instead of building it again.
"""

from __future__ import annotations

import copy
import gc
import importlib.metadata
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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
            _template = _cached() or _cache(build_template())
        template = _template
    with _no_collections():
        return {nid: _copy_node(data) for nid, data in template.items()}


def build_template() -> dict[ua.NodeId, NodeData]:
    """asyncua's standard address space, built as asyncua's own server builds it."""
    builder = InternalServer()
    fill = standard_address_space.fill_address_space  # untyped generated code
    cast("Callable[[object], None]", fill)(builder.node_mgt_service)
    return {nid: builder.aspace[nid] for nid in builder.aspace.keys()}  # noqa: SIM118


def cache_file() -> Path:
    """Where the built template is kept for the next process: in the user's cache folder,
    named for the asyncua and Python versions that built it."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    asyncua = importlib.metadata.version("asyncua")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return base / "plantwire" / f"opcua-standard-nodes-asyncua{asyncua}-py{python}.pickle"


def _cached() -> dict[ua.NodeId, NodeData] | None:
    """The template a process before this one kept, if it can be read."""
    try:
        data = cache_file().read_bytes()
    except OSError:
        return None
    try:
        with _no_collections():
            template = pickle.loads(data)  # the user's own cache, written by _cache
    except Exception:  # noqa: BLE001 - a damaged or foreign file: build the template again
        return None
    return cast("dict[ua.NodeId, NodeData]", template) if isinstance(template, dict) else None


def _cache(template: dict[ua.NodeId, NodeData]) -> dict[ua.NodeId, NodeData]:
    """Keep ``template`` for later processes (whole or not at all; best effort)."""
    path = cache_file()
    part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    with suppress(OSError, pickle.PicklingError, TypeError, AttributeError):  # not picklable
        path.parent.mkdir(parents=True, exist_ok=True)
        with _no_collections():
            part.write_bytes(pickle.dumps(template, protocol=pickle.HIGHEST_PROTOCOL))
        part.replace(path)
    with suppress(OSError):
        part.unlink(missing_ok=True)
    return template


@contextmanager
def _no_collections() -> Iterator[None]:
    """~300k small objects are made or walked: collections would dominate the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
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
