"""``/api/v1``: the registry of enterprises and groups, and their indicators.

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
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from plantwire_platform.api.schemas import Enterprise
from plantwire_platform.api.window import WindowQuery, resolve_window
from plantwire_platform.errors import ApiError
from plantwire_platform.indicators.jobs import explain_job, lend, light, report_job
from plantwire_platform.indicators.report import Explanation, IndicatorReport
from plantwire_platform.registry import groups, queries
from plantwire_platform.registry.groups import GroupKind
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
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such enterprise"}}


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


def router() -> APIRouter:
    """The routes of ``/api/v1``."""
    router = APIRouter()

    @router.get("/api/v1/enterprises", response_model=list[Enterprise], tags=["registry"])
    async def list_enterprises(conn: Conn) -> list[dict[str, Any]]:
        return await queries.list_enterprises(conn)

    @router.get("/api/v1/enterprises/{enterprise_id}", tags=["registry"], responses=NOT_FOUND)
    async def enterprise(conn: Conn, enterprise_id: int) -> dict[str, Any]:
        """An enterprise with its sites, lines, process steps (key or not) and equipment."""
        ent = await _enterprise(conn, enterprise_id)
        return {**ent, "sites": await queries.enterprise_tree(conn, enterprise_id)}

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/indicators",
        response_model=IndicatorReport,
        tags=["indicators"],
        responses=NOT_FOUND,
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
        responses=NOT_FOUND,
    )
    async def explain(request: Request, enterprise_id: int, q: Window) -> Explanation:
        """Why each key process counted or not (coverage, AUTO share of EXECUTING time), every
        piece of equipment's time and OEE, and each line's OEE."""
        async with reading(request) as conn:
            ent = await _enterprise(conn, enterprise_id)
            window = await resolve_window(conn, [enterprise_id], q, ent["timezone"])
            subject = {"kind": "enterprise", **ent}
            args = (enterprise_id, subject, window, q.thresholds)
            if light(window.start, window.end):
                return await explain_job(lend(conn), *args)
        return await in_worker(request, explain_job, *args)

    for kind in ("chains", "parks", "regions"):
        _group_routes(router, kind)
    return router


async def _enterprise(conn: AsyncConnection[Any], enterprise_id: int) -> dict[str, Any]:
    ent = await queries.get_enterprise(conn, enterprise_id)
    if ent is None:
        raise ApiError(404, "not_found", f"enterprise {enterprise_id} not found")
    return ent


def _group_routes(router: APIRouter, kind: GroupKind) -> None:
    singular = kind.removesuffix("s")

    async def listing(conn: Conn) -> list[dict[str, Any]]:
        return await groups.listing(conn, kind)

    async def indicators(request: Request, group_id: str, q: Window) -> IndicatorReport:
        async with reading(request) as conn:
            group = None
            if kind == "regions" or group_id.isdigit():
                group = await groups.describe(conn, kind, group_id)
            if group is None:
                raise ApiError(404, "not_found", f"{singular} {group_id} not found")
            ids = await groups.members(conn, kind, group_id)
            tz = await queries.timezone_of(conn, ids)
            window = await resolve_window(conn, ids, q, tz)
            subject = {"kind": singular, **group}
            args = (subject, ids, window, q.thresholds, q.bucket, tz)
            if light(window.start, window.end, len(ids), q.bucket):
                return await report_job(lend(conn), *args)
        return await in_worker(request, report_job, *args)

    indicators.__doc__ = (
        f"Indicators of a {singular}: for each, the mean of its enterprises' values (the official "
        "statistic) beside the pooled ratio and the number of enterprises counted; members lists "
        "each enterprise's own values."
    )
    router.get(f"/api/v1/{kind}", tags=["registry"], summary=f"List {kind}")(listing)
    router.get(
        f"/api/v1/{kind}/{{group_id}}/indicators",
        response_model=IndicatorReport,
        tags=["indicators"],
        summary=f"Indicators of a {singular}",
        responses={404: {"description": f"no such {singular}"}},
    )(indicators)
