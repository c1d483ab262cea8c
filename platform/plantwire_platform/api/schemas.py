"""Response bodies of the registry routes of ``/api/v1``; indicator reports are
:mod:`plantwire_platform.indicators.report`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Enterprise(BaseModel):
    id: int
    code: str = Field(description="short code, also the Sparkplug group id")
    uscc: str = Field(description="unified social credit code")
    name: str
    region: str
    timezone: str = Field(description="the IANA time zone of its first site (UTC without one)")
    sites: int
    equipment: int


class Computations(BaseModel):
    slots: int
    running: int
    waiting: int
    refused: int = Field(description="requests refused (503 busy) since start")
    timed_out: int = Field(description="computations stopped at their deadline since start")


class Health(BaseModel):
    status: str = Field(description="ok or unhealthy")
    database: str = Field(description="ok, or why the database cannot be reached")
    computations: Computations


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a request body written into ``openapi_extra``, its definitions
    inlined: pydantic refers to them as ``#/$defs/...``, a pointer from the document's root that
    the OpenAPI document does not hold (ReDoc then renders nothing at all)."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **inline(rest)}
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined
