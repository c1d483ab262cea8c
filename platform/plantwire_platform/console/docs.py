"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with their assets served by the platform, so
that they work on a plant network without internet. Both ask for the OpenAPI document in the
console's language (``/openapi.json?lang=…``, :mod:`plantwire_platform.apidoc`). The assets are
the dist files the ``fastapi-offline`` package ships (``fastapi_offline/static``); the pages are
FastAPI's own.

ReDoc's sidebar loads its maker's logo from a CDN whatever its options say: the bundle is served
with that one address pointing at the local icon instead, so an offline browser logs no
failed request."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from plantwire_platform.translation import COOKIE, VARY, negotiate

ASSETS = "/docs-assets"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def assets_folder() -> Path:
    """Where the installed ``fastapi-offline`` keeps Swagger UI's and ReDoc's dist files."""
    return Path(str(files("fastapi_offline").joinpath("static")))


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets on ``app`` (made with ``docs_url=None``
    and ``redoc_url=None``)."""
    redoc_bundle = (assets_folder() / "redoc.standalone.js").read_bytes()
    redoc_bundle = redoc_bundle.replace(REDOC_LOGO, f"{ASSETS}/favicon.png".encode())

    @app.get(f"{ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(redoc_bundle, media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=assets_folder()), name="docs-assets")
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"

    def document(request: Request) -> str:
        """The OpenAPI document in the console's language (the reader's switch, else the
        browser's, else zh-CN)."""
        language = negotiate(request.headers.get("accept-language"), request.cookies.get(COOKIE))
        return f"{openapi_url}?lang={language}"

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        return _varying(
            get_swagger_ui_html(
                openapi_url=document(request),
                title=title,
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _varying(
            get_redoc_html(
                openapi_url=document(request),
                title=title,
                redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )


def _varying(page: HTMLResponse) -> HTMLResponse:
    """``page``, which names the document in the reader's language, saying so to caches."""
    page.headers["Vary"] = VARY
    return page
