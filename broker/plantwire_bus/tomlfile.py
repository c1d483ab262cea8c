"""TOML files validated by pydantic models, with errors that name the file, table and field."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def where(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a TOML path: ``devices[0].tags[1].map``."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif not parts or "[" not in parts[-1] or item not in ("opcua", "modbus", "mqtt"):
            parts.append(item)  # (union discriminator tags are left out)
    return ".".join(parts) or "(top level)"


def parse_toml(text: str, model: type[M], source: str, error: type[ValueError]) -> M:
    """Parse and validate ``text``; raise ``error`` naming ``source`` and every bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: invalid TOML: {exc}") from exc
    return validate(data, model, source, error)


def validate(data: object, model: type[M], source: str, error: type[ValueError]) -> M:
    """Validate parsed ``data``; raise ``error`` naming ``source`` and every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: {problems(exc)}") from exc


def problems(exc: ValidationError, message: Callable[[Any], str] | None = None) -> str:
    """Every bad field, ``; ``-separated; a table's "at least one item" is left out when its
    items are what failed (they were dropped, so the table looks empty). ``message`` words
    an error (pydantic's ``msg`` by default: the API words them in the request's language)."""
    errors = exc.errors()
    failed = [tuple(err["loc"]) for err in errors]

    def consequence(err: Any) -> bool:
        loc = tuple(err["loc"])
        return err["type"] == "too_short" and any(
            len(other) > len(loc) and other[: len(loc)] == loc for other in failed
        )

    return "; ".join(
        f"{where(_loc(err))}: {(message or _msg)(err).removeprefix('Value error, ')}"
        for err in errors
        if not consequence(err)
    )


def _loc(err: Any) -> tuple[int | str, ...]:
    """Where an error is: its location, and below it the ``at`` of an error a model's
    validator raised about one of its entries (``plantwire_platform.translation.Said``)."""
    raised = (err.get("ctx") or {}).get("error")
    return (*err["loc"], *getattr(raised, "at", ()))


def _msg(err: Any) -> str:
    return str(err["msg"])
