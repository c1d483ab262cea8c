"""Errors of the HTTP server: every error answers ``{"error": <code>, "detail": ...}``.

Routes raise :class:`ApiError` with a code (for denials, the reason code); request
validation errors, the framework's own HTTP errors (malformed body, unknown route, a route's
``HTTPException``), NUL characters in a path or query (which PostgreSQL text cannot hold),
values PostgreSQL refuses, a statement cancelled by its timeout and any unexpected failure are
given the same body.

The ``detail`` is worded in the request's language (:func:`language_of`): a
:class:`~plantwire_platform.translation.Text` from the API's catalogue, and the messages of
request validation by their type; the ``error`` codes never change with the language.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from plantwire_bus.tomlfile import problems
from plantwire_platform import translation
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


def validation_message(language: str, error: Any) -> str:
    """A request validation error's message in ``language``: pydantic's own in English (what
    clients always got; the English catalogue holds its wording for translators), else by its
    type from the API's catalogue (``validation.<type>``, its context filling the
    placeholders), else pydantic's English."""
    text = None
    if language != translation.API_DEFAULT:
        text = translation.API.messages(language).get(f"validation.{error.get('type')}")
    if text is None:
        return str(error.get("msg", ""))
    ctx = {  # a bound of 1.0 reads 1, as pydantic writes it
        k: int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in (error.get("ctx") or {}).items()
    }
    return translation.fill(text, ctx)


class Invalid:
    """The errors of a request that failed validation: pydantic's list (type, loc, msg,
    input, ctx), each ``msg`` worded in the request's language."""

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors

    def worded(self, language: str) -> object:
        found = [{**e, "msg": validation_message(language, e)} for e in self.errors]
        return jsonable_encoder(found, custom_encoder={Exception: str})


class Problems:
    """The bad fields of a body that failed validation, as one line (``field: message; ...``,
    :func:`plantwire_bus.tomlfile.problems`), each message worded in the request's
    language."""

    def __init__(self, exc: ValidationError) -> None:
        self.exc = exc

    def worded(self, language: str) -> object:
        return problems(self.exc, lambda error: validation_message(language, error))


class ApiError(Exception):
    """An error answered with the uniform body; a ``detail`` that is a
    :class:`~plantwire_platform.translation.Text` (or anything with ``worded(language)``) is
    worded in the request's language."""

    def __init__(
        self, status: int, code: str, detail: Any = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers

    def body(self, language: str) -> dict[str, Any]:
        """The uniform body of this error in ``language``."""
        return body(self.code, self.detail, language)


def body(code: str, detail: object, language: str) -> dict[str, Any]:
    """The uniform body of an error: ``code`` and ``detail`` worded in ``language``."""
    return {"error": code, "detail": translation.word(language, detail)}


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
            language = language_of(HTTPConnection(scope))
            refusal = body("invalid_request", Text("request.nul"), language)
            await JSONResponse(refusal, 422)(scope, receive, send)
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
    # PostgreSQL's own words about the value (in the server's language, here English)
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
        return JSONResponse(exc.body(language_of(request)), exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: object = exc.detail
        if exc.status_code in _FRAMEWORK and detail == HTTPStatus(exc.status_code).phrase:
            detail = _FRAMEWORK[exc.status_code]
        return JSONResponse(
            body(code_of(exc.status_code), detail, language_of(request)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    def unavailable_body(request: Request, too_long: bool) -> JSONResponse:
        language = language_of(request)
        if too_long:
            return JSONResponse(body("too_long", _TOO_LONG, language), 503)
        return JSONResponse(
            body("unavailable", _UNAVAILABLE, language), 503, headers={"Retry-After": "5"}
        )

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
        language = language_of(request)
        return JSONResponse(body("invalid_request", Invalid(list(exc.errors())), language), 422)

    for refused in _BAD_VALUES:
        app.add_exception_handler(refused, _bad_value)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # the server logs the exception itself (it is raised again after this answer)
        refusal = body("internal_error", Text("platform.failed"), language_of(request))
        return JSONResponse(refusal, 500)
