"""The console's routes: its pages (one per entry of :data:`.pages.PAGES`), the language
switch, and its static assets.

A page is an HTML shell in the reader's language; it holds no data. Its script asks
``/api/v1`` (and the partner routes) for the data with the signed-in person's token, so the
API's authorization is the page's: a refusal there shows the refusal view, never data.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from plantwire_platform.console import catalog, docs
from plantwire_platform.console.pages import PAGES, Page
from plantwire_platform.translation import VARY

STATIC = "/console/static"
LANGUAGE_COOKIE_S = 365 * 24 * 3600
SECURITY_HEADERS = {
    # everything from the platform itself: no CDN, no inline script
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def templates() -> Environment:
    return Environment(
        loader=PackageLoader("plantwire_platform.console", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def static_folder() -> Path:
    return Path(str(files("plantwire_platform.console").joinpath("static")))


def language_of(request: Request) -> str:
    return catalog.negotiate(
        request.headers.get("accept-language"), request.cookies.get(catalog.COOKIE)
    )


def _safe_next(target: str | None) -> str:
    """A local path to go back to (never another host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/console/"
    return target


def install(app: FastAPI) -> None:
    """Serve the console, ``/docs`` and ``/redoc`` on ``app``."""
    env = templates()
    app.mount(STATIC, StaticFiles(directory=static_folder()), name="console-static")
    docs.install(app)

    def render(page: Page, request: Request) -> HTMLResponse:
        language = language_of(request)

        def t(key: str, **values: Any) -> str:
            return catalog.translate(language, key, **values)

        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        boot = {
            "language": language,
            "page": page.name,
            "signedIn": page.signed_in,
            "messages": catalog.messages(language),
        }
        html = env.get_template(page.template).render(
            t=t,
            language=language,
            languages=catalog.LANGUAGES,
            page=page,
            pages=[p for p in PAGES if p.nav],
            static=STATIC,
            here=here,
            boot=json.dumps(boot, ensure_ascii=False).replace("</", "<\\/"),
        )
        headers = {**SECURITY_HEADERS, "Content-Language": language, "Vary": VARY}
        return HTMLResponse(html, headers=headers)

    for page in PAGES:

        async def show(request: Request, page: Page = page) -> HTMLResponse:
            return render(page, request)

        app.add_api_route(
            page.path, show, methods=["GET"], include_in_schema=False, name=f"console.{page.name}"
        )

    @app.get("/console", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=308)

    @app.get("/console/language/{language}", include_in_schema=False)
    async def choose(language: str, next: str | None = None) -> Response:
        """Keep the reader's choice of language in a cookie and go back."""
        if language not in catalog.LANGUAGES:
            return Response(status_code=404)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(
            catalog.COOKIE, language, max_age=LANGUAGE_COOKIE_S, samesite="lax", path="/"
        )
        return response
