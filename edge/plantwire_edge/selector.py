"""Declarative selectors for fields of a JSON document: dotted keys and list indexes.

``power.kw`` selects ``doc["power"]["kw"]``; ``phases[0].v`` selects
``doc["phases"][0]["v"]``; ``[2]`` selects the third element of a top-level list. Negative
indexes count from the end. Keys are any characters except ``.``, ``[`` and ``]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]")


class SelectorError(ValueError):
    """A selector that cannot be parsed."""


class Missing(LookupError):
    """The document has nothing at the selected place."""


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    steps: tuple[str | int, ...]

    def select(self, document: object) -> object:
        """The selected value; raises :class:`Missing` naming the step that failed."""
        current = document
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(current, list):
                    raise Missing(f"{self.text}: [{step}] applied to a non-list")
                try:
                    current = current[step]
                except IndexError:
                    raise Missing(f"{self.text}: index {step} out of range") from None
            else:
                if not isinstance(current, dict):
                    raise Missing(f"{self.text}: key {step!r} applied to a non-object")
                try:
                    current = current[step]
                except KeyError:
                    raise Missing(f"{self.text}: no key {step!r}") from None
        return current


def parse_selector(text: str) -> Selector:
    """Parse ``text``; raises :class:`SelectorError` explaining what is wrong."""
    if not text or text.startswith(".") or text.endswith("."):
        raise SelectorError(f"invalid selector {text!r}: use keys like 'a.b' and indexes '[0]'")
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or (match.group(0).startswith(".") and pos == 0):
            raise SelectorError(
                f"invalid selector {text!r} at position {pos}: use keys like 'a.b' and "
                "indexes '[0]'"
            )
        key, index = match.groups()
        if key is not None:
            if pos > 0 and not match.group(0).startswith(".") and text[pos - 1] != "]":
                raise SelectorError(f"invalid selector {text!r} at position {pos}")
            if pos > 0 and text[pos - 1] == "]" and not match.group(0).startswith("."):
                raise SelectorError(f"invalid selector {text!r}: expected '.' after ']'")
            steps.append(key)
        else:
            steps.append(int(index))
        pos = match.end()
    return Selector(text, tuple(steps))
