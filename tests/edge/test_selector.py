"""Declarative JSON selectors, case by case."""

from __future__ import annotations

import pytest

from plantwire_edge.selector import Missing, SelectorError, parse_selector

DOC = {
    "power": {"kw": 12.5, "pf": 0.93},
    "phases": [{"v": 230.1}, {"v": 229.8}, {"v": 231.0}],
    "state": "ACTIVE",
    "flags": [True, False],
    "dotted.key": 1,
    "n": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("power.kw", 12.5),
        ("phases[0].v", 230.1),
        ("phases[-1].v", 231.0),
        ("state", "ACTIVE"),
        ("flags[1]", False),
        ("n", None),
        ("power", {"kw": 12.5, "pf": 0.93}),
    ],
)
def test_select(path: str, expected: object) -> None:
    assert parse_selector(path).select(DOC) == expected


def test_select_from_a_top_level_list() -> None:
    assert parse_selector("[1].x").select([{"x": 1}, {"x": 2}]) == 2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("power.watts", "no key 'watts'"),
        ("phases[3].v", "index 3 out of range"),
        ("state.x", "applied to a non-object"),
        ("power[0]", "applied to a non-list"),
    ],
)
def test_missing_names_the_step(path: str, message: str) -> None:
    with pytest.raises(Missing, match=message):
        parse_selector(path).select(DOC)


@pytest.mark.parametrize("path", ["", ".a", "a.", "a..b", "a[x]", "a[0]b", "a.[0]", "a[0"])
def test_invalid_selectors_are_refused(path: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(path)
