"""Errors of the HTTP server: every error answers ``{"error": <code>, "detail": ...}``.

Routes raise :class:`ApiError` with a code (for denials, the reason code); request
validation errors and the framework's own HTTP errors (malformed body, unknown route, a
route's ``HTTPException``) are given the same body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def install(app: FastAPI) -> None:
    """Uniform error bodies for :class:`ApiError`, request validation errors (422) and the
    framework's own HTTP errors (malformed body, unknown route, ``HTTPException``)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail}, exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": _CODES.get(exc.status_code, "error"), "detail": exc.detail},
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
