"""The console's words: one JSON catalogue per language (``catalog/<language>.json``, message
key -> text, ``{name}`` placeholders), the language a request is answered in, and what a
catalogue lacks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final

LANGUAGES: Final = ("zh-CN", "en")
"""The console's languages; the first is the default (the people it serves read Chinese first)."""
COOKIE: Final = "plantwire_lang"
"""The cookie that keeps the reader's choice of language."""
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@cache
def messages(language: str) -> dict[str, str]:
    """The catalogue of ``language`` (one of :data:`LANGUAGES`)."""
    if language not in LANGUAGES:
        raise KeyError(language)
    text = files(__package__).joinpath("catalog", f"{language}.json").read_text("utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def translate(language: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``language`` with its placeholders filled; a missing key raises
    :class:`KeyError` (the catalogue test finds them before a reader would)."""
    text = messages(language)[key]
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


@dataclass(frozen=True, slots=True)
class Gap:
    """A message key one language has and another lacks (or has empty, or with other
    placeholders)."""

    language: str
    key: str
    problem: str


def gaps() -> list[Gap]:
    """Every key a catalogue lacks against the union of all, every empty text, and every text
    whose placeholders differ from another language's."""
    keys = set().union(*(messages(lang) for lang in LANGUAGES))
    found = []
    for key in sorted(keys):
        holders = {}
        for lang in LANGUAGES:
            text = messages(lang).get(key)
            if text is None:
                found.append(Gap(lang, key, "missing"))
            elif not text.strip():
                found.append(Gap(lang, key, "empty"))
            else:
                holders[lang] = set(_PLACEHOLDER.findall(text))
        if len({frozenset(h) for h in holders.values()}) > 1:
            found.extend(Gap(lang, key, f"placeholders {sorted(h)}") for lang, h in holders.items())
    return found


def negotiate(accept_language: str | None, chosen: str | None) -> str:
    """The language to answer in: the reader's choice (cookie) if it is one of ours, else the
    first of ours in the browser's ``Accept-Language`` by quality (``zh``, ``zh-Hans``,
    ``zh-TW`` ... read as zh-CN; ``en-*`` as en), else the default."""
    if chosen in LANGUAGES:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        match = {"zh": "zh-CN", "en": "en"}.get(primary)
        if match and quality > 0:
            ranked.append((-quality, n, match))
    return sorted(ranked)[0][2] if ranked else LANGUAGES[0]
