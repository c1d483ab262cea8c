"""The platform's HTTP server: one ASGI application made of the capabilities' routers
(``/api/v1`` from :mod:`plantwire_platform.api`, ``/partner/v1`` and ``/oauth/token`` from
:mod:`plantwire_platform.partner`, people's sign-in ``/auth/token`` from
:mod:`plantwire_platform.accounts`, the web console ``/console``, ``/docs`` and ``/redoc`` from
:mod:`plantwire_platform.console`), uniform error bodies, and ``/healthz``.

Every request is bounded: its database statements by ``statement_timeout``, its computation by
the workload's slots and deadline (:mod:`plantwire_platform.workload`), its life by its client
(:mod:`plantwire_platform.cancellation`). ``/healthz`` has a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from plantwire_platform import apidoc, connections, errors
from plantwire_platform.accounts import signin
from plantwire_platform.accounts.roles import API_ROLES
from plantwire_platform.api import (
    chains,
    editing,
    floor,
    gateways,
    items,
    machine,
    people,
    registrations,
)
from plantwire_platform.api import routes as api_routes
from plantwire_platform.api.schemas import Health
from plantwire_platform.cancellation import CancelOnDisconnect
from plantwire_platform.console import routes as console
from plantwire_platform.health import HealthProbe
from plantwire_platform.partner.context import authenticated
from plantwire_platform.partner.interface import PartnerInterface
from plantwire_platform.settings import PlatformSettings
from plantwire_platform.workers import WorkerPool, request_options
from plantwire_platform.workload import Workload

REGISTRY_MAX_BODY = 4 * 1024 * 1024
"""Largest request body of ``/api/v1`` (a registry document or an equipment sheet)."""
POOL_WAIT_S = 5.0
"""Longest wait for a pooled connection: then 503, not a hung request (the database is away
or every connection is busy)."""


def create_app(settings: PlatformSettings) -> FastAPI:
    """The API application; it opens its connection pool when served."""
    partner = PartnerInterface(settings)
    probe = HealthProbe(settings.database_url)
    timeout_ms = round(settings.api_statement_timeout_s * 1000)
    workers = WorkerPool(settings.database_url, settings.api_compute_slots, timeout_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            connections.pool(
                settings.database_url,
                options=request_options(timeout_ms),
                min_size=1,
                max_size=settings.api_pool_size,
                open=False,
                timeout=POOL_WAIT_S,
            ) as pool,
            partner.running(),
        ):
            app.state.pool = pool
            app.state.workers = workers
            if settings.api_start_workers:  # so that the first request does not wait for them
                await asyncio.to_thread(workers.start, "plantwire_platform.indicators.jobs")
            try:
                yield
            finally:
                await workers.close()
                await probe.close()

    app = FastAPI(
        title="plantwire",
        version="0.1.0",
        summary="Verified NC rates and equipment telemetry of manufacturing enterprises.",
        lifespan=lifespan,
        docs_url=None,  # served by the console with the assets shipped in the package
        redoc_url=None,
    )

    app.state.settings = settings
    app.state.workload = Workload(
        settings.api_compute_slots, settings.api_compute_queue, settings.api_deadline_s
    )
    partner.ctx.workers, partner.ctx.workload = workers, app.state.workload
    app.include_router(partner.router())
    app.include_router(signin.router(partner.ctx, partner.route_class()))
    who = Depends(authenticated(partner.ctx, API_ROLES))
    api = api_routes.router(partner.route_class(REGISTRY_MAX_BODY), [who])
    editing.routes(api)
    items.routes(api)
    chains.routes(api)
    registrations.routes(api)
    people.routes(api)
    floor.routes(api)
    machine.routes(api)
    gateways.routes(api)
    app.include_router(api)
    console.install(app)
    errors.install(app)
    apidoc.install(app)
    app.add_middleware(CancelOnDisconnect)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz(request: Request) -> JSONResponse:
        """Whether the database answers (over a connection of its own), and how busy the
        indicator computations are."""
        reached = await probe.database()
        work: Workload = request.app.state.workload
        body = {
            "status": "ok" if reached == "ok" else "unhealthy",
            "database": reached,
            "computations": {
                "slots": work.slots,
                "running": work.running,
                "waiting": work.waiting,
                "refused": work.refused,
                "timed_out": work.timed_out,
            },
        }
        return JSONResponse(body, status_code=200 if reached == "ok" else 503)

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
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    return Server(config)
