"""``/api/v1`` routes that change the registry: an enterprise's admins export their registry
(TOML, JSON, or the equipment sheet as CSV) and import it back, whole or the sheet alone, with
the effective time a change applies from; platform admins register enterprises; admins
register people. Every document is validated whole before anything is written, and a change
commits together with its audit entry."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import tomli_w
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from psycopg import AsyncConnection
from pydantic import BaseModel, Field, ValidationError

from plantwire_platform.accounts import access
from plantwire_platform.accounts.people import USERNAME, PersonError, create_person
from plantwire_platform.accounts.roles import Binding, PersonRole
from plantwire_platform.api.routes import Conn
from plantwire_platform.api.schemas import request_schema
from plantwire_platform.errors import ApiError
from plantwire_platform.problems import Problems
from plantwire_platform.registry.document import CODE, Enterprise
from plantwire_platform.registry.export import enterprise_document
from plantwire_platform.registry.sheet import SheetError, apply_sheet, equipment_sheet
from plantwire_platform.registry.store import RegistryConflict, import_enterprise
from plantwire_platform.translation import Text

Effective = Annotated[
    datetime | None,
    Query(description="when the change applies (default: now); past windows keep their facts"),
]
_DOCUMENT = {
    "requestBody": {
        "required": True,
        "content": {
            "application/toml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
_TAKEN = "a site's edge node is another registered site's, or the uscc another enterprise's"
_SHEET = {
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
}


class Imported(BaseModel):
    enterprise_id: int
    sites: int
    lines: int
    processes: int
    key_processes: int
    equipment: int
    effective: datetime


class EnterpriseIn(BaseModel):
    code: str = Field(pattern=CODE, description="also the Sparkplug group id of its gateways")
    uscc: str = Field(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(default="", max_length=100)


class ParkIn(BaseModel):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(default="", max_length=100, description="its enterprises' region")


class Park(ParkIn):
    id: int


class PersonIn(BaseModel):
    username: str = Field(pattern=USERNAME)
    role: PersonRole
    enterprise_id: int | None = Field(default=None, ge=1, le=2**62)
    park_id: int | None = Field(default=None, ge=1, le=2**62)
    region: str | None = Field(default=None, max_length=100)
    name: str = Field(default="", max_length=200)


class PersonCreated(BaseModel):
    username: str
    password: str = Field(description="shown once; stored hashed (Argon2id)")


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"application/json": {"schema": request_schema(model)}}
    return {"requestBody": {"required": True, "content": schema}}


M = TypeVar("M", bound=BaseModel)
_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


def not_json(exc: ValueError, place: str = "(top level)") -> Text:
    """Why a body is not JSON, by where the parser stopped."""
    if isinstance(exc, json.JSONDecodeError):
        return Text("body.not_json", place=place, line=exc.lineno, column=exc.colno)
    return Text("body.not_text", place=place)  # bytes that are no UTF-8 (or -16, -32)


def not_toml(exc: tomllib.TOMLDecodeError, place: str) -> Text:
    """Why a body is not TOML, by where the parser stopped (its message says where)."""
    at = _AT.search(str(exc))
    if at is None:
        return Text("body.not_toml_end", place=place)
    return Text("body.not_toml", place=place, line=int(at[1]), column=int(at[2]))


def parsed(model: type[M], body: bytes) -> M:
    """The request's JSON body as ``model`` (read after the caller was authorized)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", Problems(exc)) from None


def when(effective: datetime | None) -> datetime:
    if effective is None:
        return datetime.now(UTC)
    at = effective if effective.tzinfo else effective.replace(tzinfo=UTC)
    if not datetime(1970, 1, 1, tzinfo=UTC) <= at <= datetime(2200, 1, 1, tzinfo=UTC):
        raise ApiError(422, "invalid_request", Text("effective.bounds"))
    return at


async def current_document(conn: AsyncConnection[Any], enterprise_id: int) -> Enterprise:
    doc = await enterprise_document(conn, enterprise_id)
    if doc is None:
        raise ApiError(404, "not_found", Text("enterprise.missing", id=enterprise_id))
    return doc


async def write(
    request: Request,
    conn: AsyncConnection[Any],
    enterprise_id: int,
    doc: Enterprise,
    at: datetime,
    status: int = 200,
) -> Imported:
    try:
        await import_enterprise(conn, doc, at)
    except RegistryConflict as exc:
        raise ApiError(409, "conflict", exc.text) from None
    await access.commit(request, conn, status)
    lines = [line for site in doc.sites for line in site.lines]
    processes = [p for line in lines for p in line.processes]
    return Imported(
        enterprise_id=enterprise_id,
        sites=len(doc.sites),
        lines=len(lines),
        processes=len(processes),
        key_processes=sum(p.is_key for p in processes),
        equipment=sum(len(site.equipment) for site in doc.sites),
        effective=at,
    )


def routes(router: APIRouter) -> None:
    """Add the registry-changing routes to the ``/api/v1`` router."""
    tags: list[Any] = ["registry"]

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/registry",
        tags=tags,
        name="enterprise.registry.read",
        response_class=Response,
        responses={
            200: {"content": {"application/toml": {}, "application/json": {}, "text/csv": {}}}
        },
    )
    async def export(
        request: Request,
        conn: Conn,
        enterprise_id: int,
        format: Literal["toml", "json", "csv"] = "toml",
    ) -> Response:
        """The enterprise's registry as it is now: one enterprise table of the registry format
        (``docs/registry.md``) as TOML or JSON, or its equipment sheet as CSV (its own
        people)."""
        await access.require_enterprise(request, conn, enterprise_id, "detail")
        doc = await current_document(conn, enterprise_id)
        if format == "csv":
            return Response(equipment_sheet(doc), media_type="text/csv")
        data = doc.model_dump(mode="json", exclude_none=True, exclude={"park"})
        if format == "json":
            return Response(json.dumps(data), media_type="application/json")
        return Response(tomli_w.dumps(data), media_type="application/toml")

    @router.put(
        "/api/v1/enterprises/{enterprise_id}/registry",
        tags=tags,
        name="enterprise.registry.write",
        responses={
            409: {"description": _TAKEN},
            413: {"description": "request body too large"},
        },
        response_model=Imported,
        openapi_extra=_DOCUMENT,
    )
    async def replace(
        request: Request, conn: Conn, enterprise_id: int, effective: Effective = None
    ) -> Imported:
        """Create or change the enterprise's sites (with their gateway: ``edge_node``), lines,
        process steps (``is_key`` with ``key_reason``, the equipment performing each) and
        equipment (``control_type``, ``declared_nc``) from one enterprise table, TOML or JSON
        as exported; what it leaves out stays. Validated whole before anything is written;
        changed facts apply from ``effective`` (its admins)."""
        await access.require_enterprise(request, conn, enterprise_id, "manage")
        current = await current_document(conn, enterprise_id)
        text = (await request.body()).decode("utf-8", "replace")
        data: object
        if "json" in request.headers.get("content-type", ""):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise ApiError(422, "invalid_request", not_json(exc, "<body>")) from None
        else:
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ApiError(422, "invalid_request", not_toml(exc, "<body>")) from None
        try:
            doc = Enterprise.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", Problems(exc, "<body>")) from None
        if doc.code != current.code:
            raise ApiError(422, "invalid_request", Text("enterprise.code", code=current.code))
        return await write(request, conn, enterprise_id, doc, when(effective))

    @router.put(
        "/api/v1/enterprises/{enterprise_id}/registry/equipment",
        tags=tags,
        name="enterprise.equipment.write",
        responses={413: {"description": "request body too large"}},
        response_model=Imported,
        openapi_extra=_SHEET,
    )
    async def sheet(
        request: Request, conn: Conn, enterprise_id: int, effective: Effective = None
    ) -> Imported:
        """Add or change equipment from an equipment sheet (CSV with the columns site, line,
        code, name, control_type, declared_nc, processes, ideal_cycle_s). Checked whole:
        with any problem nothing is written, and the answer lists each one by row (the header
        is row 1) and field (its admins)."""
        await access.require_enterprise(request, conn, enterprise_id, "manage")
        current = await current_document(conn, enterprise_id)
        text = (await request.body()).decode("utf-8", "replace")
        try:
            doc = apply_sheet(current, text)
        except SheetError as exc:
            raise ApiError(422, "invalid_request", exc) from None
        return await write(request, conn, enterprise_id, doc, when(effective))

    @router.post(
        "/api/v1/enterprises",
        tags=tags,
        name="enterprise.create",
        status_code=201,
        responses={409: {"description": "code, uscc or username taken"}},
        response_model=Imported,
        openapi_extra=json_body(EnterpriseIn),
    )
    async def create(request: Request, conn: Conn) -> Imported:
        """Register an enterprise (platform admins); its admins then describe it."""
        access.require_platform_admin(request)
        body = parsed(EnterpriseIn, await request.body())
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM enterprise WHERE code = %s),"
            " (SELECT count(*) FROM enterprise WHERE uscc = %s)",
            (body.code, body.uscc),
        )
        code_taken, uscc_taken = await cur.fetchone() or (0, 0)
        if code_taken or uscc_taken:
            taken = Text("enterprise.code_taken" if code_taken else "enterprise.uscc_taken")
            raise ApiError(409, "conflict", taken)
        doc = Enterprise(code=body.code, uscc=body.uscc, name=body.name, region=body.region)
        ent_id = await import_enterprise(conn, doc)
        request.state.note.supplier_id = ent_id
        result = await write(request, conn, ent_id, doc, datetime.now(UTC))
        return result

    @router.post(
        "/api/v1/parks",
        tags=["parks"],
        name="park.create",
        status_code=201,
        responses={409: {"description": "code taken"}},
        response_model=Park,
        openapi_extra=json_body(ParkIn),
    )
    async def park(request: Request, conn: Conn) -> Park:
        """Register an industrial park (platform admins); its authority (``POST /people`` with
        role ``park_authority``) then asks enterprises in, with their consent."""
        access.require_platform_admin(request, "parks")
        body = parsed(ParkIn, await request.body())
        cur = await conn.execute(
            "INSERT INTO park (code, name, region) VALUES (%s, %s, %s)"
            " ON CONFLICT (code) DO NOTHING RETURNING id",
            (body.code, body.name, body.region),
        )
        made = await cur.fetchone()
        if made is None:
            raise ApiError(409, "conflict", Text("park.taken", code=body.code))
        await access.commit(request, conn, 201)
        return Park(id=int(made[0]), **body.model_dump())

    @router.post(
        "/api/v1/people",
        tags=["accounts"],
        name="person.create",
        status_code=201,
        responses={409: {"description": "code, uscc or username taken"}},
        response_model=PersonCreated,
        openapi_extra=json_body(PersonIn),
    )
    async def person(request: Request, conn: Conn) -> PersonCreated:
        """Register a person who signs in at ``/auth/token``: platform admins anyone, enterprise
        admins the admins, viewers and analysts of their own enterprise. The password is
        answered once."""
        access.require_registrar(request)
        body = parsed(PersonIn, await request.body())
        await access.require_people(request, conn, body.role, body.enterprise_id)
        try:
            binding = Binding(body.enterprise_id, body.park_id, body.region)
            password = await create_person(conn, body.username, body.role, binding, body.name)
        except PersonError as exc:
            taken = exc.text.key == "person.taken"
            raise ApiError(
                409 if taken else 422, "conflict" if taken else "invalid_request", exc.text
            ) from None
        await access.commit(request, conn, 201)
        return PersonCreated(username=body.username, password=password)
