"""Errors of the HTTP server: every error answers ``{"error": <code>, "detail": ...}``.

Routes raise :class:`ApiError` with a code (for denials, the reason code); request
validation errors, the framework's own HTTP errors (malformed body, unknown route, a route's
``HTTPException``), NUL characters in a path or query (which PostgreSQL text cannot hold),
values PostgreSQL refuses, a constraint of the database a change would break, a statement
cancelled by its timeout and any unexpected failure are given the same body.

The ``detail`` is worded in the request's language (:func:`language_of`): a
:class:`~plantwire_platform.translation.Text` from the API's catalogue, and the messages of
request validation by their type; the ``error`` codes never change with the language. A detail
is always something worded (:class:`~plantwire_platform.translation.Worded`), never a text
made in English: PostgreSQL's own words (in the server's language) are never passed on, its
refusals are named by their kind and what it names (the constraint, the column). Every error
answer says ``Vary: Accept-Language, Cookie``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from plantwire_platform import translation
from plantwire_platform.problems import Invalid
from plantwire_platform.translation import Text
from plantwire_platform.workers import JobFailed

_TOO_LONG = Text("database.too_long")
_UNAVAILABLE = Text("database.unavailable")
_FRAMEWORK = {
    400: Text("request.malformed"),
    404: Text("request.no_route"),
    405: Text("request.method"),
}
"""The framework's own errors, worded by their status when they carry its stock phrase."""
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


VARY = {"Vary": translation.VARY}
"""The header of an answer whose body depends on the reader's language."""


class ErrorBody(BaseModel):
    """Every error: a code (for denials the reason code) and a human-readable detail."""

    error: str
    detail: Any = None


def language_of(request: HTTPConnection) -> str:
    """The language of a request's error details: the reader's choice of the console (its
    ``plantwire_lang`` cookie), else the first of ours in ``Accept-Language``, else English
    (:data:`~plantwire_platform.translation.API_DEFAULT`)."""
    return translation.negotiate(
        request.headers.get("accept-language"),
        request.cookies.get(translation.COOKIE),
        translation.API_DEFAULT,
    )


class ApiError(Exception):
    """An error answered with the uniform body; a ``detail`` that is a
    :class:`~plantwire_platform.translation.Text` (or anything with ``worded(language)``) is
    worded in the request's language."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: translation.Worded | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers

    def body(self, language: str) -> dict[str, Any]:
        """The uniform body of this error in ``language``."""
        return body(self.code, self.detail, language)


def body(code: str, detail: translation.Worded | None, language: str) -> dict[str, Any]:
    """The uniform body of an error: ``code`` and ``detail`` worded in ``language``."""
    return {"error": code, "detail": None if detail is None else detail.worded(language)}


def answer(
    request: HTTPConnection,
    status: int,
    code: str,
    detail: translation.Worded | None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The uniform error answer to ``request``, worded in its language."""
    return JSONResponse(
        body(code, detail, language_of(request)), status, headers={**(headers or {}), **VARY}
    )


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
            refusal = answer(HTTPConnection(scope), 422, "invalid_request", Text("request.nul"))
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


BAD_VALUES: dict[type[psycopg.Error], str] = {
    psycopg.errors.InvalidTimeZoneDisplacementValue: "postgres.time_zone",
    psycopg.errors.DatetimeFieldOverflow: "postgres.time_range",
    psycopg.errors.InvalidDatetimeFormat: "postgres.time_form",
    psycopg.errors.NumericValueOutOfRange: "postgres.number_range",
    psycopg.errors.InvalidTextRepresentation: "postgres.value_form",
    psycopg.errors.CharacterNotInRepertoire: "postgres.character",
    psycopg.errors.UntranslatableCharacter: "postgres.character",
}
"""A value PostgreSQL cannot take (a time zone offset beyond 15:59, a year PostgreSQL cannot
hold, a number out of range...), by the catalogue key of its kind: the request's values, so a
422."""
BROKEN: dict[type[psycopg.Error], str] = {
    psycopg.errors.UniqueViolation: "postgres.unique",
    psycopg.errors.ForeignKeyViolation: "postgres.foreign_key",
    psycopg.errors.CheckViolation: "postgres.check",
    psycopg.errors.NotNullViolation: "postgres.not_null",
    psycopg.errors.ExclusionViolation: "postgres.exclusion",
}
"""A constraint of the database a change would break (the same code at once from two requests,
a reference to what was just deleted...), by the catalogue key of its kind: a 409."""


def refusal(exc: psycopg.Error) -> Text:
    """What PostgreSQL refused, in the catalogue's words: its kind, with the constraint, column
    or table it names (identifiers, never its English)."""
    kind = next(key for cls, key in (BAD_VALUES | BROKEN).items() if isinstance(exc, cls))
    diag = exc.diag
    return Text(
        kind,
        constraint=diag.constraint_name or "-",
        column=diag.column_name or "-",
        table=diag.table_name or "-",
        sqlstate=exc.sqlstate or "-",
    )


async def _bad_value(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    return answer(request, 422, "invalid_request", refusal(exc))


async def _broken(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    return answer(request, 409, "conflict", refusal(exc))


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
        return answer(request, exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own words are its stock phrases: worded by status, never passed on
        status = exc.status_code
        detail: translation.Worded = _FRAMEWORK.get(status) or Text(
            "request.refused", status=status
        )
        if isinstance(exc.detail, translation.Worded):
            detail = exc.detail
        headers = getattr(exc, "headers", None)
        return answer(request, status, code_of(status), detail, headers)

    def unavailable_body(request: Request, too_long: bool) -> JSONResponse:
        if too_long:
            return answer(request, 503, "too_long", _TOO_LONG)
        return answer(request, 503, "unavailable", _UNAVAILABLE, {"Retry-After": "5"})

    @app.exception_handler(QueryCanceled)
    async def too_long(request: Request, exc: QueryCanceled) -> JSONResponse:
        return unavailable_body(request, True)

    @app.exception_handler(JobFailed)
    async def job_failed(request: Request, exc: JobFailed) -> JSONResponse:
        return unavailable_body(request, exc.reason == "too_long")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return unavailable_body(request, False)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(request, 422, "invalid_request", Invalid(list(exc.errors())))

    for refused in BAD_VALUES:
        app.add_exception_handler(refused, _bad_value)
    for broken in BROKEN:
        app.add_exception_handler(broken, _broken)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # the server logs the exception itself (it is raised again after this answer)
        return answer(request, 500, "internal_error", Text("platform.failed"))
