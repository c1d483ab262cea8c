"""The OpenAPI document in the reader's language: ``/openapi.json?lang=zh-CN`` (or the
request's language as its error details are chosen: the console's cookie, ``Accept-Language``,
else English) serves the operations' summaries and descriptions, the responses' descriptions
and the info text in Chinese. The English is the code's own (docstrings, summaries); the
Chinese is the catalogue ``messages/openapi/zh-CN.json`` of the project's one catalogue
mechanism, keyed ``METHOD /path#summary``, ``METHOD /path#description``,
``response#<English description>`` and ``info#summary``. Parameter and schema descriptions
stay in English."""

from __future__ import annotations

import copy
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from plantwire_platform import translation
from plantwire_platform.errors import language_of

SOURCE: Final = "en"
"""The language the code documents the API in."""
WORDS: Final = translation.Catalogue("plantwire_platform", "messages/openapi", ("zh-CN",))


def operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every operation of the document with its key (``METHOD /path``)."""
    return [
        (f"{method.upper()} {path}", operation)
        for path, methods in schema.get("paths", {}).items()
        for method, operation in methods.items()
    ]


def translated(schema: dict[str, Any], language: str) -> dict[str, Any]:
    """``schema`` with its words in ``language`` (the schema itself for the source language;
    a text the catalogue lacks stays English, which the catalogue test forbids)."""
    if language == SOURCE:
        return schema
    words = WORDS.messages(language)
    out = copy.deepcopy(schema)
    info = out.get("info", {})
    for part in ("summary", "description"):
        if f"info#{part}" in words:
            info[part] = words[f"info#{part}"]
    for key, operation in operations(out):
        for part in ("summary", "description"):
            if f"{key}#{part}" in words:
                operation[part] = words[f"{key}#{part}"]
        for response in operation.get("responses", {}).values():
            said = words.get(f"response#{response.get('description')}")
            if said:
                response["description"] = said
    return out


def install(app: FastAPI) -> None:
    """Serve ``app.openapi_url`` in the request's language, in place of FastAPI's route."""
    url = app.openapi_url or "/openapi.json"
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != url]
    documents: dict[str, dict[str, Any]] = {}

    @app.get(url, include_in_schema=False)
    async def document(request: Request, lang: str | None = None) -> JSONResponse:
        language = translation.negotiate(lang, None, "") or language_of(request)
        if language not in documents:
            documents[language] = translated(app.openapi(), language)
        headers = {"Content-Language": language, "Vary": "Accept-Language, Cookie"}
        return JSONResponse(documents[language], headers=headers)
