"""The project's words in zh-CN and en: gettext-style catalogues (one JSON file per language,
message key -> text with ``{name}`` placeholders), the language a request is answered in, and
what a catalogue lacks.

Three catalogues use this mechanism: the console's pages (``console/catalog/``), the API's
error details (``messages/``) and the OpenAPI document's Chinese (``messages/openapi/``, whose
English is the code's own docstrings: :mod:`plantwire_platform.apidoc`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Final, Protocol, runtime_checkable

LANGUAGES: Final = ("zh-CN", "en")
"""The project's languages; the first is the console's default (the people it serves read
Chinese first)."""
API_DEFAULT: Final = "en"
"""The API's language when a request names none of ours: English, what its clients always got."""
COOKIE: Final = "plantwire_lang"
"""The cookie that keeps the reader's choice of language (set by the console's switch)."""
PLACEHOLDER: Final = re.compile(r"\{(\w+)\}")
VARY: Final = "Accept-Language, Cookie"
"""The ``Vary`` header of every answer whose body depends on the reader's language (the
cookie holds their choice, ``Accept-Language`` the browser's)."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The catalogues of one set of words: ``<folder>/<language>.json`` in ``package``."""

    package: str
    folder: str
    languages: tuple[str, ...] = LANGUAGES

    def messages(self, language: str) -> dict[str, str]:
        """The catalogue of ``language`` (one of :attr:`languages`)."""
        if language not in self.languages:
            raise KeyError(language)
        return _load(self.package, self.folder, language)

    def translate(self, language: str, key: str, **values: object) -> str:
        """The text of ``key`` in ``language`` with its placeholders filled; a missing key
        raises :class:`KeyError` (the catalogue tests find them before a reader would)."""
        return fill(self.messages(language)[key], values)


@cache
def _load(package: str, folder: str, language: str) -> dict[str, str]:
    text = files(package).joinpath(folder, f"{language}.json").read_text("utf-8")
    loaded: dict[str, str] = json.loads(text)
    return loaded


def fill(text: str, values: Mapping[str, object]) -> str:
    """``text`` with its ``{name}`` placeholders replaced (an unknown one is left as it is)."""
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


@dataclass(frozen=True, slots=True, init=False)
class Text:
    """A message of the API's catalogue to be worded in the language of the request that
    receives it: its key and the values of its placeholders."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)

    def __init__(self, key: str, **values: Any) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "values", values)

    def worded(self, language: str) -> str:
        """The message in ``language``; in English if that catalogue lacks it (the catalogue
        test fails on it first), its key if both do: an error is answered all the same."""
        values = {k: word(language, v) for k, v in self.values.items()}  # a Text in a Text
        for lang in (language, API_DEFAULT):
            text = API.messages(lang).get(self.key)
            if text is not None:
                return fill(text, values)
        return self.key

    def __str__(self) -> str:
        return self.worded(API_DEFAULT)


API: Final = Catalogue("plantwire_platform", "messages")
"""The API's error details."""


class Said(ValueError):
    """A problem worded by the API's catalogue: ``text``, worded in the language of the request
    it reaches; ``str()`` is its English (what the command line prints). Raised in a pydantic
    validator, it is the ``error`` of the ``value_error`` pydantic reports, and the API words it
    from there (:mod:`plantwire_platform.problems`). ``at`` is where below the validated
    model the problem is (``("sites", 1, "edge_node")``): a problem a model finds among its
    entries (a code twice) names the entry, not the model."""

    def __init__(self, text: Text, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(str(text))
        self.text = text
        self.at = at


@runtime_checkable
class Worded(Protocol):
    """A detail that is worded in the language of the request it answers."""

    def worded(self, language: str) -> object: ...


def word(language: str, detail: object) -> object:
    """``detail`` in ``language``: a :class:`Text` (or any :class:`Worded`) worded for it,
    anything else (a value, a code) as it is."""
    return detail.worded(language) if isinstance(detail, Worded) else detail


@dataclass(frozen=True, slots=True)
class Gap:
    """A message key one language has and another lacks (or has empty, or with other
    placeholders)."""

    language: str
    key: str
    problem: str


def gaps(catalogue: Catalogue) -> list[Gap]:
    """Every key a language lacks against the union of all, every empty text, and every text
    whose placeholders differ from another language's."""
    keys = set().union(*(catalogue.messages(lang) for lang in catalogue.languages))
    found = []
    for key in sorted(keys):
        holders = {}
        for lang in catalogue.languages:
            text = catalogue.messages(lang).get(key)
            if text is None:
                found.append(Gap(lang, key, "missing"))
            elif not text.strip():
                found.append(Gap(lang, key, "empty"))
            else:
                holders[lang] = set(PLACEHOLDER.findall(text))
        if len({frozenset(h) for h in holders.values()}) > 1:
            found.extend(Gap(lang, key, f"placeholders {sorted(h)}") for lang, h in holders.items())
    return found


def negotiate(accept_language: str | None, chosen: str | None, default: str = LANGUAGES[0]) -> str:
    """The language to answer in: the reader's choice (cookie) if it is one of ours, else the
    first of ours in the browser's ``Accept-Language`` by quality (``zh``, ``zh-Hans``,
    ``zh-TW`` ... read as zh-CN; ``en-*`` as en), else ``default``."""
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
    return sorted(ranked)[0][2] if ranked else default
