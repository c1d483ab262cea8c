"""The platform's HTTP server: one ASGI application made of the capabilities' routers
(``/api/v1`` from :mod:`plantwire_platform.api`, ``/partner/v1`` and ``/oauth/token`` from
:mod:`plantwire_platform.partner`), uniform error bodies, and ``/healthz``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from plantwire_platform import errors
from plantwire_platform.api import routes as api_routes
from plantwire_platform.api.schemas import Health
from plantwire_platform.partner.interface import PartnerInterface
from plantwire_platform.settings import PlatformSettings


def create_app(settings: PlatformSettings) -> FastAPI:
    """The API application; it opens its connection pool when served."""
    partner = PartnerInterface(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            AsyncConnectionPool(settings.database_url, min_size=1, max_size=8, open=False) as pool,
            partner.running(),
        ):
            app.state.pool = pool
            yield

    app = FastAPI(
        title="plantwire",
        version="0.1.0",
        summary="Verified NC rates and equipment telemetry of manufacturing enterprises.",
        lifespan=lifespan,
    )

    app.include_router(partner.router())
    app.include_router(api_routes.router())
    errors.install(app)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz(request: Request) -> JSONResponse:
        try:
            pool: AsyncConnectionPool = request.app.state.pool
            async with pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            return JSONResponse(
                {"status": "unhealthy", "database": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    return app


def api_server(settings: PlatformSettings) -> uvicorn.Server:
    """A uvicorn server for the API that leaves signal handling to its caller.

    Run it with ``await server.serve()``; stop it with ``server.should_exit = True``.
    """

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning"
    )
    return Server(config)
