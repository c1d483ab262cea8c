"""``/api/v1``: the registry of enterprises and groups, and their indicators.

Every route needs an identity (a Bearer token of a person or client) and decides, with a
reason code that its audit entry records, whether the caller may read what it asks for
(:mod:`plantwire_platform.accounts.access`): enterprise detail for its own people, enterprise
aggregates also for the roles bound to its chain, park or region, a group's roll-up for the
roles bound to the group; listings show what the caller may read.

Reads the registry (:mod:`plantwire_platform.registry`) and computes indicators
(:mod:`plantwire_platform.indicators`). An indicator request checks its window first
(:mod:`plantwire_platform.api.window`); a light one (one enterprise, a week at most, no
buckets) is computed on its pooled connection, anything more in a worker process, once a
computation slot of the process's workload is free.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.params import Depends as Dependency
from fastapi.routing import APIRoute
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from plantwire_platform.accounts.access import listing_filter, require_enterprise, require_group
from plantwire_platform.api.schemas import Enterprise
from plantwire_platform.api.window import WindowQuery, resolve_window
from plantwire_platform.errors import ApiError
from plantwire_platform.indicators.jobs import explain_job, lend, light, report_job
from plantwire_platform.indicators.report import Explanation, IndicatorReport
from plantwire_platform.registry import chains, groups, queries
from plantwire_platform.registry.groups import GroupKind
from plantwire_platform.registry.registrations import PARKS, REGIONS, members_during
from plantwire_platform.translation import Text
from plantwire_platform.workers import Job, WorkerPool
from plantwire_platform.workload import Workload


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled database connection for one request."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]
Window = Annotated[WindowQuery, Depends()]
T = TypeVar("T")
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid or expired token"},
    403: {
        "description": "role_forbidden (the caller's role may not ask this) or not_bound "
        "(the enterprise or group is not the caller's)"
    },
    404: {"description": "no such enterprise or group (platform admins)"},
    429: {"description": "rate limited (see Retry-After)"},
    503: {"description": "the database or the audit log is unavailable: nothing was answered"},
}


@contextlib.asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection for the request's own reads (and a light computation)."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


async def in_worker(request: Request, job: Job[T], *args: Any) -> T:
    """``job`` in a worker process, once a computation slot is free."""
    workload: Workload = request.app.state.workload
    workers: WorkerPool = request.app.state.workers
    async with workload.slot():
        return await workers.run(job, *args)


def router(route: type[APIRoute], dependencies: list[Dependency]) -> APIRouter:
    """The routes of ``/api/v1``, of the audited ``route`` class behind ``dependencies`` (the
    caller's identification)."""
    router = APIRouter(route_class=route, dependencies=dependencies, responses=NOT_FOUND)

    @router.get(
        "/api/v1/enterprises",
        response_model=list[Enterprise],
        tags=["registry"],
        name="enterprise.list",
    )
    async def list_enterprises(request: Request, conn: Conn) -> list[dict[str, Any]]:
        """The enterprises whose indicators the caller may read."""
        visible = await listing_filter(request, conn, None)
        return [row for row in await queries.list_enterprises(conn) if visible(row)]

    @router.get("/api/v1/enterprises/{enterprise_id}", tags=["registry"], name="enterprise.read")
    async def enterprise(request: Request, conn: Conn, enterprise_id: int) -> dict[str, Any]:
        """An enterprise with its sites, lines, process steps (key or not) and equipment (its
        own people)."""
        await require_enterprise(request, conn, enterprise_id, "detail")
        ent = await _enterprise(conn, enterprise_id)
        return {**ent, "sites": await queries.enterprise_tree(conn, enterprise_id)}

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/indicators",
        response_model=IndicatorReport,
        tags=["indicators"],
        name="enterprise.indicators",
    )
    async def enterprise_indicators(
        request: Request, enterprise_id: int, q: Window
    ) -> IndicatorReport:
        """Key-process NC rate (declared, verified, time-weighted), coverage, MDI share and
        equipment networking rate of one enterprise.

        Without ``from``/``to`` the window is the last hour, shortened to the time since the
        enterprise's equipment (re)connected if that is shorter. With ``bucket`` the window is
        also cut into local days, weeks or months of the enterprise's first site.
        """
        async with reading(request) as conn:
            await require_enterprise(request, conn, enterprise_id, "aggregate")
            ent = await _enterprise(conn, enterprise_id)
            zone = ent["timezone"]
            window = await resolve_window(conn, [enterprise_id], q, zone)
            subject = {"kind": "enterprise", **ent}
            args = (subject, [enterprise_id], window, q.thresholds, q.bucket, zone)
            if light(window.start, window.end, 1, q.bucket):
                return await report_job(lend(conn), *args)
        return await in_worker(request, report_job, *args)

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/indicators/explain",
        response_model=Explanation,
        tags=["indicators"],
        name="enterprise.explain",
    )
    async def explain(request: Request, enterprise_id: int, q: Window) -> Explanation:
        """Why each key process counted or not (coverage, AUTO share of EXECUTING time), every
        piece of equipment's time and OEE, each line's OEE (a line is a site's: two sites'
        lines of one code are two lines) and the enterprise's (its own people). With ``bucket``
        also the OEE of each local day, week or month of the window."""
        async with reading(request) as conn:
            await require_enterprise(request, conn, enterprise_id, "detail")
            ent = await _enterprise(conn, enterprise_id)
            zone = ent["timezone"]
            window = await resolve_window(conn, [enterprise_id], q, zone)
            subject = {"kind": "enterprise", **ent}
            args = (enterprise_id, subject, window, q.thresholds, q.bucket, zone)
            if light(window.start, window.end, 1, q.bucket):
                return await explain_job(lend(conn), *args)
        return await in_worker(request, explain_job, *args)

    for kind in ("chains", "parks", "regions"):
        _group_routes(router, kind)
    return router


async def _enterprise(conn: AsyncConnection[Any], enterprise_id: int) -> dict[str, Any]:
    ent = await queries.get_enterprise(conn, enterprise_id)
    if ent is None:
        raise ApiError(404, "not_found", Text("enterprise.missing", id=enterprise_id))
    return ent


def _group_routes(router: APIRouter, kind: GroupKind) -> None:
    singular = kind.removesuffix("s")

    async def listing(request: Request, conn: Conn) -> list[dict[str, Any]]:
        visible = await listing_filter(request, conn, kind)
        return [row for row in await groups.listing(conn, kind) if visible(row)]

    async def indicators(request: Request, group_id: str, q: Window) -> IndicatorReport:
        async with reading(request) as conn:
            await require_group(request, conn, kind, group_id)
            group = None
            if kind == "regions" or group_id.isdigit():
                group = await groups.describe(conn, kind, group_id)
            if group is None:
                raise ApiError(404, "not_found", Text(f"{singular}.missing", id=group_id))
            ids = await groups.members(conn, kind, group_id)
            tz = await queries.timezone_of(conn, ids)
            window = await resolve_window(conn, ids, q, tz)
            if kind == "chains":  # the suppliers that were members throughout the window
                ids = await chains.members_during(conn, int(group_id), window.start, window.end)
            elif kind == "parks":  # the enterprises that were in it throughout the window
                ids = await members_during(conn, PARKS, int(group_id), window.start, window.end)
            else:  # the same for a region
                ids = await members_during(conn, REGIONS, group_id, window.start, window.end)
            subject = {"kind": singular, **group, "timezone": tz}  # the zone of its buckets
            args = (subject, ids, window, q.thresholds, q.bucket, tz)
            if light(window.start, window.end, len(ids), q.bucket):
                return await report_job(lend(conn), *args)
        return await in_worker(request, report_job, *args)

    indicators.__doc__ = (
        f"Indicators of a {singular}: for each, the mean of its enterprises' values (the official "
        "statistic) beside the pooled ratio and the number of enterprises counted; members lists "
        "each enterprise's own values."
    )
    listing.__doc__ = f"The {kind} whose indicators the caller may read."
    router.get(
        f"/api/v1/{kind}", tags=["registry"], summary=f"List {kind}", name=f"{singular}.list"
    )(listing)
    router.get(
        f"/api/v1/{kind}/{{group_id}}/indicators",
        response_model=IndicatorReport,
        tags=["indicators"],
        summary=f"Indicators of a {singular}",
        name=f"{singular}.indicators",
    )(indicators)
