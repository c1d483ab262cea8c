"""The standard address space a simulator process reads from the cache is the one asyncua
builds: the same nodes with the same attribute values and references; a damaged cache file is
built again and replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.server.address_space import AttributeValue, NodeData
from asyncua.ua.attribute_ids import AttributeIds

from plantwire_sim import opcua_space


def shape(nodes: dict[ua.NodeId, NodeData]) -> dict[ua.NodeId, Any]:
    """What a server serves of each node: its attributes' values and its references."""
    return {
        nid: ({attr: a.value for attr, a in data.attributes.items()}, data.references)
        for nid, data in nodes.items()
    }


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder, and a process that has built no template yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(opcua_space, "_template", None)
    return tmp_path


def test_the_cached_standard_address_space_is_the_built_one(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not opcua_space.cache_file().exists()
    opcua_space.standard_nodes()  # builds it and keeps it
    built = opcua_space._template
    assert built is not None and len(built) > 5000  # the whole standard address space
    assert opcua_space.cache_file().parent == cache_home / "plantwire"
    assert [p.name for p in (cache_home / "plantwire").iterdir()] == [opcua_space.cache_file().name]

    def no_build() -> dict[ua.NodeId, NodeData]:
        raise AssertionError("built again although the cache holds it")

    monkeypatch.setattr(opcua_space, "build_template", no_build)
    monkeypatch.setattr(opcua_space, "_template", None)  # a new simulator process
    read = opcua_space.standard_nodes()
    assert shape(read) == shape(built)
    assert read.keys() == built.keys()


def test_a_damaged_cache_is_built_again(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = NodeData(ua.NodeId(ua.Int32(1), ua.Int16(0)))
    node.attributes[AttributeIds.NodeId] = AttributeValue(
        ua.DataValue(ua.Variant(ua.NodeId(ua.Int32(1), ua.Int16(0))))
    )
    builds: list[int] = []

    def build() -> dict[ua.NodeId, NodeData]:
        builds.append(1)
        return {node.nodeid: node}

    monkeypatch.setattr(opcua_space, "build_template", build)
    opcua_space.cache_file().parent.mkdir(parents=True)
    opcua_space.cache_file().write_bytes(b"not a pickle")
    assert shape(opcua_space.standard_nodes()) == shape({node.nodeid: node})
    assert builds == [1]
    monkeypatch.setattr(opcua_space, "_template", None)
    assert shape(opcua_space.standard_nodes()) == shape({node.nodeid: node})
    assert builds == [1]  # the damaged file was replaced by the built template
