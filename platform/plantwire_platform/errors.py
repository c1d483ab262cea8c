"""Errors of the HTTP server: every error answers ``{"error": <code>, "detail": ...}``.

Routes raise :class:`ApiError` with a code (for denials, the reason code); request
validation errors, the framework's own HTTP errors (malformed body, unknown route, a route's
``HTTPException``), NUL characters in a path or query (which PostgreSQL text cannot hold),
values PostgreSQL refuses, a statement cancelled by its timeout and any unexpected failure are
given the same body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from plantwire_platform.workers import JobFailed

_TOO_LONG = "a database statement took longer than allowed: ask for less"
_UNAVAILABLE = "the database cannot be reached now; try again later"
_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    422: "invalid_request",
    503: "unavailable",
}


def code_of(status: int) -> str:
    """The ``error`` code of a framework error with this HTTP status."""
    return _CODES.get(status, "error")


class ErrorBody(BaseModel):
    """Every error: a code (for denials the reason code) and a human-readable detail."""

    error: str
    detail: Any = None


class ApiError(Exception):
    """An error answered with the uniform body."""

    def __init__(
        self, status: int, code: str, detail: Any = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


class NulGuard:
    """Refuses a NUL character anywhere in the path or query with 422, before routing: no
    route has to carry it to the database to fail there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"]
            or b"%00" in scope.get("raw_path", b"")
            or b"%00" in scope.get("query_string", b"")
        ):
            body = {"error": "invalid_request", "detail": "NUL characters are not accepted"}
            await JSONResponse(body, 422)(scope, receive, send)
            return
        await self.app(scope, receive, send)


_BAD_VALUES = (
    psycopg.errors.InvalidTimeZoneDisplacementValue,
    psycopg.errors.DatetimeFieldOverflow,
    psycopg.errors.InvalidDatetimeFormat,
    psycopg.errors.NumericValueOutOfRange,
    psycopg.errors.InvalidTextRepresentation,
    psycopg.errors.CharacterNotInRepertoire,
    psycopg.errors.UntranslatableCharacter,
)
"""What PostgreSQL says of a value it cannot take (a time zone offset beyond 15:59, a year
PostgreSQL cannot hold, a number out of range...): the request's values, so a 422."""


async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JSONResponse({"error": "invalid_request", "detail": detail}, 422)


def _uniform_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The application's OpenAPI generator, documenting every error as :class:`ErrorBody` (the
    framework documents its own 422 body otherwise, which this application never sends)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema()
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in ("4", "5"):
                        response["content"] = body
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    return openapi


def install(app: FastAPI) -> None:
    """Uniform error bodies for :class:`ApiError`, request validation errors (422), the
    framework's own HTTP errors (malformed body, unknown route, ``HTTPException``), NUL
    characters in paths and queries (422), values PostgreSQL refuses (422), statement
    timeouts and an unreachable database (503) and anything unexpected (500); the OpenAPI
    document describes every error response with that body."""
    app.add_middleware(NulGuard)
    app.openapi = _uniform_openapi(app)  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": code_of(exc.status_code), "detail": exc.detail},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(QueryCanceled)
    async def too_long(request: Request, exc: QueryCanceled) -> JSONResponse:
        return JSONResponse({"error": "too_long", "detail": _TOO_LONG}, 503)

    @app.exception_handler(JobFailed)
    async def job_failed(request: Request, exc: JobFailed) -> JSONResponse:
        if exc.reason == "too_long":
            return JSONResponse({"error": "too_long", "detail": _TOO_LONG}, 503)
        return JSONResponse(
            {"error": "unavailable", "detail": _UNAVAILABLE}, 503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"error": "unavailable", "detail": _UNAVAILABLE}, 503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        return JSONResponse({"error": "invalid_request", "detail": detail}, 422)

    for refused in _BAD_VALUES:
        app.add_exception_handler(refused, _bad_value)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # the server logs the exception itself (it is raised again after this answer)
        return JSONResponse({"error": "internal_error", "detail": "the platform failed"}, 500)
