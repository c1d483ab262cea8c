"""``/api/v1``: the registry of enterprises and groups, and their indicators.

Reads the registry (:mod:`plantwire_platform.registry`) and computes indicators
(:mod:`plantwire_platform.indicators`); it imports nothing of the ingest or the partner
interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from plantwire_platform.api.schemas import Enterprise
from plantwire_platform.indicators import enterprise as ind
from plantwire_platform.indicators import report
from plantwire_platform.indicators.formulas import AUTO_SHARE_MIN, COVERAGE_MIN, Thresholds
from plantwire_platform.indicators.report import Explanation, Indicator, IndicatorReport
from plantwire_platform.indicators.shift_calendar import buckets
from plantwire_platform.registry import groups, queries
from plantwire_platform.registry.groups import GroupKind


async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled database connection for one request."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[AsyncConnection[Any], Depends(connection)]


def router() -> APIRouter:
    """The routes of ``/api/v1``."""
    router = APIRouter()

    @router.get("/api/v1/enterprises", response_model=list[Enterprise], tags=["registry"])
    async def list_enterprises(conn: Conn) -> list[dict[str, Any]]:
        return await queries.list_enterprises(conn)

    @router.get(
        "/api/v1/enterprises/{enterprise_id}",
        tags=["registry"],
        responses={404: {"description": "no such enterprise"}},
    )
    async def enterprise(conn: Conn, enterprise_id: int) -> dict[str, Any]:
        """An enterprise with its sites, lines, process steps (key or not) and equipment."""
        ent = await queries.get_enterprise(conn, enterprise_id)
        if ent is None:
            raise HTTPException(404, f"enterprise {enterprise_id} not found")
        return {**ent, "sites": await queries.enterprise_tree(conn, enterprise_id)}

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/indicators",
        response_model=IndicatorReport,
        response_model_exclude_none=True,
        tags=["indicators"],
        responses={404: {"description": "no such enterprise"}},
    )
    async def enterprise_indicators(
        conn: Conn, enterprise_id: int, q: Annotated[WindowQuery, Depends()]
    ) -> IndicatorReport:
        """Key-process NC rate (declared, verified, time-weighted), coverage, MDI share and
        equipment networking rate of one enterprise.

        Without ``from``/``to`` the window is the last hour, shortened to the time since the
        enterprise's equipment (re)connected if that is shorter. With ``bucket`` the window is
        also cut into local days, weeks or months of the enterprise's first site.
        """
        ent = await queries.get_enterprise(conn, enterprise_id)
        if ent is None:
            raise HTTPException(404, f"enterprise {enterprise_id} not found")
        window = await _window(conn, [enterprise_id], q)
        subject = {"kind": "enterprise", **ent}
        return await _report(conn, subject, [enterprise_id], window, q, ent["timezone"])

    @router.get(
        "/api/v1/enterprises/{enterprise_id}/indicators/explain",
        response_model=Explanation,
        tags=["indicators"],
        responses={404: {"description": "no such enterprise"}},
    )
    async def explain(
        conn: Conn, enterprise_id: int, q: Annotated[WindowQuery, Depends()]
    ) -> Explanation:
        """Why each key process counted or not (coverage, AUTO share of EXECUTING time), every
        piece of equipment's time and OEE, and each line's OEE."""
        ent = await queries.get_enterprise(conn, enterprise_id)
        if ent is None:
            raise HTTPException(404, f"enterprise {enterprise_id} not found")
        window = await _window(conn, [enterprise_id], q)
        result = await ind.enterprise_indicators(
            conn, enterprise_id, window.start, window.end, q.thresholds, with_oee=True
        )
        return report.explanation({"kind": "enterprise", **ent}, window, result)

    for kind in ("chains", "parks", "regions"):
        _group_routes(router, kind)
    return router


def _group_routes(router: APIRouter, kind: GroupKind) -> None:
    singular = kind.removesuffix("s")

    async def listing(conn: Conn) -> list[dict[str, Any]]:
        return await groups.listing(conn, kind)

    async def indicators(
        request: Request,
        conn: Conn,
        group_id: str,
        q: Annotated[WindowQuery, Depends()],
    ) -> IndicatorReport:
        group = None
        if kind == "regions" or group_id.isdigit():
            group = await groups.describe(conn, kind, group_id)
        if group is None:
            raise HTTPException(404, f"{singular} {group_id} not found")
        ids = await groups.members(conn, kind, group_id)
        window = await _window(conn, ids, q)
        tz = await queries.timezone_of(conn, ids)
        subject = {"kind": singular, **group}
        return await _report(conn, subject, ids, window, q, tz, request.app.state.pool)

    indicators.__doc__ = (
        f"Indicators of a {singular}: for each, the mean of its enterprises' values (the official "
        "statistic) beside the pooled ratio and the number of enterprises counted; members lists "
        "each enterprise's own values."
    )
    router.get(f"/api/v1/{kind}", tags=["registry"], summary=f"List {kind}")(listing)
    router.get(
        f"/api/v1/{kind}/{{group_id}}/indicators",
        response_model=IndicatorReport,
        response_model_exclude_none=True,
        tags=["indicators"],
        summary=f"Indicators of a {singular}",
        responses={404: {"description": f"no such {singular}"}},
    )(indicators)


class WindowQuery:
    """The query parameters every indicator endpoint takes."""

    def __init__(
        self,
        start: Annotated[
            datetime | None, Query(alias="from", description="window start (ISO 8601)")
        ] = None,
        end: Annotated[datetime | None, Query(alias="to", description="window end")] = None,
        bucket: Annotated[
            Literal["day", "week", "month"] | None,
            Query(description="also cut the window into local days, weeks or months"),
        ] = None,
        coverage_min: Annotated[float, Query(ge=0, le=1)] = COVERAGE_MIN,
        auto_share_min: Annotated[float, Query(ge=0, le=1)] = AUTO_SHARE_MIN,
    ) -> None:
        self.start = _aware(start) if start else None
        self.end = _aware(end) if end else None
        self.bucket = bucket
        self.thresholds = Thresholds(coverage_min, auto_share_min)


MAX_BUCKETS = 400


async def _window(conn: AsyncConnection[Any], ids: list[int], q: WindowQuery) -> report.Window:
    end = q.end or datetime.now(UTC)
    start = q.start or (await ind.default_window(conn, ids, end))[0]
    if start >= end:
        raise HTTPException(422, "'from' must be before 'to'")
    return report.Window(start=start, end=end, defaulted=q.start is None and q.end is None)


async def _report(
    conn: AsyncConnection[Any],
    subject: dict[str, Any],
    ids: list[int],
    window: report.Window,
    q: WindowQuery,
    timezone: str,
    pool: AsyncConnectionPool | None = None,
) -> IndicatorReport:
    async def one(eid: int, start: datetime, end: datetime) -> list[Indicator]:
        if pool is None:
            result = await ind.enterprise_indicators(conn, eid, start, end, q.thresholds)
        else:
            async with pool.connection() as own:
                result = await ind.enterprise_indicators(own, eid, start, end, q.thresholds)
        return report.enterprise_indicators(result)

    async def values(start: datetime, end: datetime) -> tuple[list[Indicator], list[Any]]:
        # the members of a group are computed side by side, each on a connection of its own
        computed = await asyncio.gather(*(one(eid, start, end) for eid in ids))
        per = [({"id": eid}, items) for eid, items in zip(ids, computed, strict=True)]
        if subject["kind"] == "enterprise":
            return per[0][1], []
        return report.group_indicators(per), per

    headline, per = await values(window.start, window.end)
    body = IndicatorReport(subject=subject, window=window, indicators=headline)
    if per:
        body.members = [
            {**who, "indicators": [i.model_dump(exclude_none=True) for i in items]}
            for who, items in per
        ]
    if q.bucket:
        cuts = buckets(window.start, window.end, q.bucket, timezone)
        if len(cuts) > MAX_BUCKETS:
            raise HTTPException(422, f"{len(cuts)} buckets; at most {MAX_BUCKETS} per request")
        body.buckets = [
            report.Bucket(start=a, end=b, indicators=(await values(a, b))[0]) for a, b in cuts
        ]
    return body


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
