"""Validation problems worded in a request's language: pydantic's errors of a request or of a
document the API checks (a registry, an entry, a sheet), each message from the API's catalogue
by its type (``validation.<type>``), or, for a problem the code itself found (a
:class:`~plantwire_platform.translation.Said` raised in a validator), by its own text."""

from __future__ import annotations

import re
from typing import Any

from fastapi.encoders import jsonable_encoder
from pydantic import ValidationError

from plantwire_bus.tomlfile import problems
from plantwire_platform import translation


def validation_message(language: str, error: Any) -> str:
    """A validation error's message in ``language``: pydantic's own in English (what clients
    always got; the English catalogue holds its wording for translators), else by its type from
    the API's catalogue (``validation.<type>``, its context filling the placeholders, the
    reason a date, time, duration or JSON did not parse from ``validation.reason.<English>``); a
    problem the code found and worded (a ``value_error`` of a
    :class:`~plantwire_platform.translation.Said`) in its own words; else pydantic's
    English."""
    said = (error.get("ctx") or {}).get("error")
    if isinstance(said, translation.Said):
        worded = said.text.worded(language)
        return worded if language != translation.API_DEFAULT else str(error.get("msg", ""))
    text = None
    if language != translation.API_DEFAULT:
        text = translation.API.messages(language).get(f"validation.{error.get('type')}")
    if text is None:
        return str(error.get("msg", ""))
    ctx = {  # a bound of 1.0 reads 1, as pydantic writes it
        k: int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in (error.get("ctx") or {}).items()
    }
    reason = ctx.get("error")
    if isinstance(reason, str):  # why a date, time, duration or JSON did not parse
        ctx["error"] = _reason(language, reason)
    for name in ("expected", "expected_schemes", "expected_tags"):  # 'a', 'b' or 'c'
        choices = ctx.get(name)
        if isinstance(choices, str):
            ctx[name] = _OR.sub(translation.API.messages(language)["validation.or"], choices)
    return translation.fill(text, ctx)


_OR = re.compile(r"(?<=') or (?=')")


_AT = re.compile(r"^(.*) at line (\d+) column (\d+)$")


def _reason(language: str, reason: str) -> str:
    """pydantic's reason a value did not parse, in ``language`` (``validation.reason.<English>``,
    with where in the JSON: ``validation.reason_at``), else as it is."""
    words = translation.API.messages(language)
    at = _AT.match(reason)
    said = words.get(f"validation.reason.{at[1] if at else reason}")
    if said is None:
        return reason
    if at is None:
        return said
    return said + translation.fill(words["validation.reason_at"], {"line": at[2], "column": at[3]})


class Invalid:
    """The errors of a request that failed validation: pydantic's list (type, loc, msg,
    input, ctx), each ``msg`` worded in the request's language."""

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors

    def worded(self, language: str) -> object:
        found = [{**e, "msg": validation_message(language, e)} for e in self.errors]
        return jsonable_encoder(found, custom_encoder={Exception: str})


class Problems:
    """The bad fields of a body or document that failed validation, as one line
    (``field: message; ...``, :func:`plantwire_bus.tomlfile.problems`), after ``source``
    (``<body>: ``) if given, each message worded in the request's language; ``str()`` is the
    English."""

    def __init__(self, exc: ValidationError, source: str = "") -> None:
        self.exc, self.source = exc, source

    def worded(self, language: str) -> str:
        found = problems(self.exc, lambda error: validation_message(language, error))
        return f"{self.source}: {found}" if self.source else found

    def __str__(self) -> str:
        return self.worded(translation.API_DEFAULT)
