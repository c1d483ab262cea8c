"""Two mapped points feeding one canonical state metric (a CNC's OPC 40501 mode, which has no
MDI, and its OPC 40502 CncOperationMode, which has): the merge, value by value, and the config
rules for it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from plantwire_edge.devices import OpcUaDevice
from plantwire_edge.state_merge import StateMerge

BASE, OVERRIDE = 0, 1


def merged(events: list[tuple[int, int, str]], *, drains: tuple[int, ...] = ()) -> list[Any]:
    """Samples of a merge (base point 0, point 1 overriding MDI) fed (member, ts, value) in
    arrival order, drained after the events at the indexes in ``drains`` and at the end."""
    merge = StateMerge(key=7)
    assert merge.join(()) == BASE and merge.join(("MDI",)) == OVERRIDE
    out: list[Any] = []
    for i, (member, ts, value) in enumerate(events):
        merge.put(member, value, ts)
        if i in drains:
            out += merge.drain()
    out += merge.drain()
    assert all(key == 7 for key, _, _ in out)
    return [(ts, value) for _, value, ts in out]


@pytest.mark.parametrize(
    ("events", "samples"),
    [
        # the base alone passes through, repeats included (as an unmerged point would)
        ([(BASE, 1, "AUTO"), (BASE, 2, "AUTO"), (BASE, 3, "MANUAL")],
         [(1, "AUTO"), (2, "AUTO"), (3, "MANUAL")]),
        # MDI starts: 40501 reads Manual, 40502 MDA, at the same instant -> one sample, MDI
        ([(BASE, 1, "AUTO"), (OVERRIDE, 1, "AUTO"), (BASE, 5, "MANUAL"), (OVERRIDE, 5, "MDI")],
         [(1, "AUTO"), (5, "MDI")]),
        # the same, arriving grouped by point (as an OPC UA publish response does)
        ([(BASE, 5, "MANUAL"), (BASE, 6, "AUTO"), (OVERRIDE, 5, "MDI"), (OVERRIDE, 6, "AUTO")],
         [(5, "MDI"), (6, "AUTO")]),
        # the override changing within its non-overriding values publishes nothing
        ([(BASE, 1, "SETUP"), (OVERRIDE, 1, "MANUAL"), (OVERRIDE, 2, "AUTO")], [(1, "SETUP")]),
        # nothing from the base yet: only an overriding value is published; the base's value
        # under a lasting override changes nothing
        ([(OVERRIDE, 1, "AUTO"), (OVERRIDE, 2, "MDI"), (BASE, 3, "MANUAL")], [(2, "MDI")]),
    ],
)  # fmt: skip
def test_merged_samples(events: list[tuple[int, int, str]], samples: list[Any]) -> None:
    assert merged(events) == samples


def test_the_merge_carries_over_between_drains() -> None:
    events = [(BASE, 1, "AUTO"), (OVERRIDE, 1, "AUTO"), (OVERRIDE, 4, "MDI"), (BASE, 4, "MANUAL"),
              (BASE, 6, "AUTO"), (OVERRIDE, 6, "AUTO")]  # fmt: skip
    assert merged(events, drains=(1, 2)) == [(1, "AUTO"), (4, "MDI"), (6, "AUTO")]


def tag(node: str, **extra: Any) -> dict[str, Any]:
    return {"node": f"nsu=urn:x;s={node}", **extra}


def device(*tags: dict[str, Any]) -> OpcUaDevice:
    return OpcUaDevice.model_validate(
        {"kind": "opcua", "device_id": "M1", "endpoint": "opc.tcp://h:4840", "tags": tags}
    )


def test_config_allows_a_second_point_only_as_an_override() -> None:
    base = tag("mode", map="opc40501/MachineOperationMode")
    mdi = tag("op", map="opc40502/CncOperationMode", override=["MDI"])
    assert [t.metric_name for t in device(base, mdi).tags] == ["State/Mode", "State/Mode"]
    with pytest.raises(ValidationError, match="metric published twice: State/Mode"):
        device(base, tag("op", map="opc40502/CncOperationMode"))
    with pytest.raises(ValidationError, match="override needs map"):
        device(tag("x", metric="Count", override=["MDI"]))
    with pytest.raises(ValidationError, match="override: FOO not produced by"):
        device(base, tag("op", map="opc40502/CncOperationMode", override=["FOO"]))
