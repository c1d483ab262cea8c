"""The console's words: one JSON catalogue per language (``catalog/<language>.json``, message
key -> text, ``{name}`` placeholders) read by the project's one catalogue mechanism
(:mod:`plantwire_platform.translation`), which also chooses the language of a request."""

from __future__ import annotations

from typing import Final

from plantwire_platform.translation import COOKIE, LANGUAGES, Catalogue, fill, negotiate

__all__ = ["COOKIE", "LANGUAGES", "WORDS", "messages", "negotiate", "translate"]

WORDS: Final = Catalogue("plantwire_platform.console", "catalog")


def messages(language: str) -> dict[str, str]:
    """The console's catalogue of ``language`` (one of :data:`LANGUAGES`)."""
    return WORDS.messages(language)


def translate(language: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``language`` with its placeholders filled; a missing key raises
    :class:`KeyError` (the catalogue test finds them before a reader would)."""
    return fill(messages(language)[key], values)
