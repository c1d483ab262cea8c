"""The OpenAPI document in the reader's language: ``/openapi.json?lang=zh-CN`` (or the
request's language as its error details are chosen: the console's cookie, ``Accept-Language``,
else English) serves every text of the document in Chinese: the operations' summaries and
descriptions, the responses', the parameters' and the schemas' (fields and models)
descriptions and the info text. The English is the code's own (docstrings, summaries, field
descriptions); the Chinese is the catalogue ``messages/openapi/zh-CN.json`` of the project's
one catalogue mechanism, keyed ``METHOD /path#summary``, ``METHOD /path#description``,
``response#<English description>``, ``description#<English description>`` (a parameter's or a
schema's, wherever it stands) and ``info#summary``."""

from __future__ import annotations

import copy
from collections.abc import Iterator
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


def _described(node: object) -> Iterator[dict[str, Any]]:
    """Every object under ``node`` with a ``description`` text (a parameter, a schema, one of
    its properties...); a property *named* description is a schema, not a text."""
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            yield node
        for value in node.values():
            yield from _described(value)
    elif isinstance(node, list):
        for value in node:
            yield from _described(value)


def texts(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every text of the document to translate: its catalogue key, the object holding it and
    the name of its field there."""
    info = schema.get("info", {})
    for part in ("summary", "description"):
        if info.get(part):
            yield f"info#{part}", info, part
    for key, operation in operations(schema):
        for part in ("summary", "description"):
            if operation.get(part):
                yield f"{key}#{part}", operation, part
        for response in operation.get("responses", {}).values():
            if response.get("description"):
                yield f"response#{response['description']}", response, "description"
        for part in ("parameters", "requestBody"):
            for node in _described(operation.get(part)):
                yield f"description#{node['description']}", node, "description"
    for node in _described(schema.get("components")):
        yield f"description#{node['description']}", node, "description"


def translated(schema: dict[str, Any], language: str) -> dict[str, Any]:
    """``schema`` with its words in ``language`` (the schema itself for the source language;
    a text the catalogue lacks stays English, which the catalogue test forbids)."""
    if language == SOURCE:
        return schema
    words = WORDS.messages(language)
    out = copy.deepcopy(schema)
    for key, holder, part in list(texts(out)):
        said = words.get(key)
        if said:
            holder[part] = said
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
        headers = {"Content-Language": language, "Vary": translation.VARY}
        return JSONResponse(documents[language], headers=headers)
