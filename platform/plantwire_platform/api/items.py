"""``/api/v1`` routes by which an enterprise's admins add or change one site (with its gateway:
``edge_node``), line, process step or piece of equipment at a time, beside the whole document
of :mod:`.editing`. A change applies from ``?effective=`` (default: now); past windows keep
their facts. Every edit is validated against the whole enterprise before anything is written,
and commits together with its audit entry."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from plantwire_platform.accounts import access
from plantwire_platform.api.editing import (
    Effective,
    Imported,
    current_document,
    not_json,
    when,
    write,
)
from plantwire_platform.api.routes import Conn
from plantwire_platform.api.schemas import request_schema
from plantwire_platform.errors import ApiError
from plantwire_platform.registry import items
from plantwire_platform.registry.document import Equipment, Line, Process, Site

_BASE = "/api/v1/enterprises/{enterprise_id}/sites"
_PATHS = {
    "site": (_BASE, "/{site}"),
    "line": (_BASE + "/{site}/lines", "/{line}"),
    "process": (_BASE + "/{site}/lines/{line}/processes", "/{process}"),
    "equipment": (_BASE + "/{site}/equipment", "/{equipment}"),
}
_MODELS: dict[str, Any] = {"site": Site, "line": Line, "process": Process, "equipment": Equipment}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such enterprise, site, line, process step or equipment"},
    409: {"description": "an entry with this code, or a site with this edge node, exists already"},
    422: {"description": "the edit is invalid; the detail names the field"},
}


def _body(model: Any, partial: bool, kind: str) -> dict[str, Any]:
    schema = request_schema(model)
    if kind == "equipment":
        schema["properties"]["processes"] = {
            "type": "array",
            "items": {"type": "string"},
            "description": "codes of the process steps of its line it performs",
        }
    if partial:
        schema.pop("required", None)
        schema["properties"].pop("code", None)
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


async def _json(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(422, "invalid_request", not_json(exc)) from None


async def _edit(
    request: Request,
    conn: Conn,
    enterprise_id: int,
    kind: str,
    path: tuple[str, ...],
    effective: Any,
    adding: bool,
) -> Imported:
    await access.require_enterprise(request, conn, enterprise_id, "manage")
    body = await _json(request)
    at = when(effective)
    current = await current_document(conn, enterprise_id)
    try:
        edit = items.add if adding else items.change
        doc = edit(current, kind, path, body)
    except items.ItemInvalid as exc:
        raise ApiError(422, "invalid_request", exc.detail) from None
    except items.ItemMissing as exc:
        raise ApiError(404, "not_found", exc.detail) from None
    except items.ItemTaken as exc:
        raise ApiError(409, "conflict", exc.detail) from None
    return await write(request, conn, enterprise_id, doc, at, 201 if adding else 200)


def _handlers(kind: str, names: list[str]) -> tuple[Any, Any]:
    async def create(
        request: Request, conn: Conn, enterprise_id: int, effective: Effective = None
    ) -> Imported:
        path = tuple(str(request.path_params[n]) for n in names[:-1])
        return await _edit(request, conn, enterprise_id, kind, path, effective, True)

    async def update(
        request: Request, conn: Conn, enterprise_id: int, effective: Effective = None
    ) -> Imported:
        path = tuple(str(request.path_params[n]) for n in names)
        return await _edit(request, conn, enterprise_id, kind, path, effective, False)

    return create, update


def routes(router: APIRouter) -> None:
    """Add the per-entry registry routes to the ``/api/v1`` router."""
    tags: list[Any] = ["registry"]
    for kind, (collection, item) in _PATHS.items():
        params = [p.strip("{}") for p in (collection + item).split("/") if p.startswith("{")][1:]

        create, update = _handlers(kind, params)
        create.__doc__ = (
            f"Add a {kind} as in the registry format (``docs/registry.md``)"
            + (", with ``processes``: the steps of its line it performs" if kind == "equipment"
               else "")
            + "; it exists from ``effective`` (its admins)."
        )  # fmt: skip
        update.__doc__ = (
            f"Change the fields of a {kind} the body names (its code stays); changed facts "
            "apply from ``effective``, earlier windows keep theirs (its admins)."
        )
        router.post(
            collection,
            tags=tags,
            name=f"enterprise.{kind}.create",
            status_code=201,
            response_model=Imported,
            responses=_ERRORS,
            openapi_extra=_body(_MODELS[kind], False, kind),
        )(create)
        router.patch(
            collection + item,
            tags=tags,
            name=f"enterprise.{kind}.change",
            response_model=Imported,
            responses=_ERRORS,
            openapi_extra=_body(_MODELS[kind], True, kind),
        )(update)
