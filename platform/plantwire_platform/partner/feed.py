"""Partner data endpoints: indicator series, machine states, production counts, alarms and
events, telemetry.

Every call decides access afresh in one statement (:mod:`plantwire_platform.partner.access`),
reads with the scope enforced in SQL (:mod:`plantwire_platform.partner.data`), and answers only
once its audit entry, allowed or denied, is committed (:class:`partner_audit.AuditWriter`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel, Field

from plantwire_platform.errors import ApiError
from plantwire_platform.indicators import enterprise as ind
from plantwire_platform.indicators import report as rsp
from plantwire_platform.indicators.formulas import FORMULA_VERSION, Thresholds
from plantwire_platform.indicators.shift_calendar import buckets
from plantwire_platform.partner import access, data
from plantwire_platform.partner.context import Id, Who
from plantwire_platform.partner.tokens import Caller

if TYPE_CHECKING:
    from plantwire_platform.partner.context import Context

DbId = Annotated[int, Field(ge=1, le=2**62)]
Purpose = Annotated[str, Query(min_length=1, max_length=64, description="why the data is read")]
From = Annotated[datetime | None, Query(alias="from", description="ISO 8601, inclusive")]
To = Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive")]
Format = Annotated[Literal["json", "csv"], Query(description="output format")]
IdList = Annotated[list[DbId] | None, Query(max_length=100)]
Fields = Annotated[list[Annotated[str, Field(max_length=200)]] | None, Query(max_length=100)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Cursor = Annotated[str | None, Query(max_length=200)]

T = TypeVar("T")


class Row(BaseModel):
    ts: datetime = Field(description="sample or event time (raw) or hour start (aggregated)")
    site: str
    equipment: str
    metric: str = Field(description="metric name; for alarms and events the alarm's name")
    value: float | str | None = Field(description="raw value, hourly mean, or last state")
    min: float | None
    max: float | None
    n: int = Field(description="samples or events in the row")


class RowPage(BaseModel):
    dataset_id: int
    grant_id: int | None = Field(description="null when reading the enterprise's own data")
    granularity: str | None = Field(description="raw or aggregated, as the scope applied")
    items: list[Row]
    next_cursor: str | None


class IndicatorPoint(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    indicators: list[rsp.Indicator]


class IndicatorPage(BaseModel):
    dataset_id: int
    grant_id: int | None
    items: list[IndicatorPoint]
    next_cursor: str | None


async def read(
    ctx: Context,
    caller: Caller,
    dataset_id: int,
    kind: str,
    action: str,
    purpose: str,
    scope: dict[str, Any],
    work: Callable[[access.Access], Awaitable[tuple[T, int]]],
    window: tuple[datetime | None, datetime | None] | None = None,
    grant_id: int | None = None,
    audit_allowed: bool = True,
) -> tuple[access.Access, T]:
    """Decide, read with ``work`` (which returns its result and the number of rows it gives
    out) and audit; a denial is audited and raised as :class:`ApiError`.
    ``audit_allowed=False`` is for a caller that audits the data when it sends it (webhooks)."""
    try:
        verdict = await access.decide(
            ctx.decider, caller, dataset_id, kind, purpose, scope, window, grant_id
        )
    except access.DecisionUnavailable as exc:
        raise ApiError(503, "unavailable", "access cannot be decided now") from exc
    if isinstance(verdict, access.Denial):
        await ctx.audited(
            caller,
            supplier_id=verdict.supplier_id,
            dataset_id=dataset_id,
            grant_id=verdict.grant_id,
            action=action,
            outcome="denied",
            reason=verdict.reason,
            status=verdict.status,
        )
        raise ApiError(verdict.status, verdict.reason, verdict.detail)
    result, rows = await work(verdict)
    if not audit_allowed:
        return verdict, result
    await ctx.audited(
        caller,
        supplier_id=verdict.dataset.enterprise_id,
        dataset_id=dataset_id,
        grant_id=verdict.grant_id,
        action=action,
        outcome="allowed",
        status=200,
        rows=rows,
    )
    return verdict, result


async def indicator_values(
    ctx: Context, allowed: access.Access, lo: datetime, hi: datetime, reuse: bool = True
) -> list[rsp.Indicator]:
    """The supplier's indicators over [lo, hi), reused while its data versions hold (not kept
    without ``reuse``: a window ending at this very moment is never asked for again)."""
    supplier, thresholds = allowed.dataset.enterprise_id, Thresholds()

    async def compute() -> list[rsp.Indicator]:
        async with ctx.pool().connection() as conn:
            result = await ind.enterprise_indicators(conn, supplier, lo, hi, thresholds)
        return rsp.enterprise_indicators(result)

    if not reuse:
        return await compute()
    key = (supplier, lo, hi, FORMULA_VERSION, thresholds, allowed.versions)
    values: list[rsp.Indicator] = await ctx.cache.get(key, hi, compute)
    return values


async def snapshot(
    ctx: Context,
    caller: Caller,
    dataset_id: int,
    purpose: str,
    start: datetime | None,
    action: str,
    grant_id: int | None = None,
) -> dict[str, Any]:
    """The granted indicators of the last hour (or since ``start``) up to now, clamped to the
    grant's window; what live updates (stream and webhooks) send. Audited as ``action``, or
    (``grant_id`` given: a webhook's check) only when denied."""
    end = datetime.now(UTC)
    begin = start or end - timedelta(hours=1)

    async def work(
        allowed: access.Access,
    ) -> tuple[tuple[datetime, datetime, list[rsp.Indicator]], int]:
        a, b = allowed.start or begin, allowed.end or end
        if a >= b:
            return (begin, end, []), 0
        values = await indicator_values(ctx, allowed, a, b, reuse=b < end)
        return (a, b, values), len(values)

    allowed, (a, b, values) = await read(
        ctx,
        caller,
        dataset_id,
        "indicators",
        action,
        purpose,
        {"start": start, "end": None},
        work,
        (begin, end),
        grant_id,
        audit_allowed=grant_id is None,
    )
    return {
        "dataset_id": dataset_id,
        "grant_id": allowed.grant_id,
        "from": a,
        "to": b,
        "indicators": [v.model_dump(mode="json") for v in values],
    }


def utc(ts: datetime | None) -> datetime | None:
    """A query's time in UTC (a naive one is taken as UTC), as PostgreSQL takes it (offsets up
    to 15:59, where Python allows 23:59); 422 when out of range."""
    if ts is None:
        return None
    try:
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ApiError(422, "invalid_request", "time out of range") from None


def routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: data"]

    def row_endpoint(kind: str, doc: str) -> None:
        async def rows(
            caller: Who,
            dataset_id: Id,
            purpose: Purpose,
            start: From = None,
            end: To = None,
            sites: IdList = None,
            equipment: IdList = None,
            fields: Fields = None,
            cursor: Cursor = None,
            limit: Limit = 1000,
            format: Format = "json",
        ) -> Any:
            start, end = utc(start), utc(end)
            if start and end and start >= end:
                raise ApiError(422, "invalid_request", "'from' must be before 'to'")
            try:
                data.decode_cursor(cursor)
            except ValueError as exc:
                raise ApiError(422, "invalid_request", str(exc)) from None
            scope = {
                "sites": sites,
                "equipment": equipment,
                "fields": fields,
                "start": start,
                "end": end,
            }

            async def work(
                allowed: access.Access,
            ) -> tuple[tuple[list[dict[str, Any]], str | None, str | None], int]:
                params = {
                    "grant": allowed.grant_id,
                    "dataset": dataset_id,
                    "ent": caller.enterprise_id,
                    "limit": limit,
                    "cursor": cursor,
                    **scope,
                }
                async with ctx.pool().connection() as conn:
                    page = await data.rows(conn, kind, params)
                return page, len(page[0])

            allowed, (items, nxt, granularity) = await read(
                ctx, caller, dataset_id, kind, f"data.{kind}", purpose, scope, work
            )
            if format == "csv":
                return _csv(items, nxt)
            page = RowPage(
                dataset_id=dataset_id,
                grant_id=allowed.grant_id,
                granularity=granularity,
                items=[Row(**i) for i in items],
                next_cursor=nxt,
            )
            return Response(page.model_dump_json(), media_type="application/json")

        rows.__doc__ = doc
        r.get(
            f"/datasets/{{dataset_id}}/{kind}",
            response_model=RowPage,
            tags=tags,
            summary=f"Granted {kind}",
            responses={200: {"content": {"text/csv": {}}}},
        )(rows)

    @r.get(
        "/datasets/{dataset_id}/indicators",
        response_model=IndicatorPage,
        tags=tags,
        summary="Granted indicator series",
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def indicator_series(
        caller: Who,
        dataset_id: Id,
        purpose: Purpose,
        start: From = None,
        end: To = None,
        bucket: Literal["day", "week", "month"] | None = None,
        cursor: Annotated[int, Query(ge=0, le=10_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 31,
        format: Format = "json",
    ) -> Any:
        """Indicators of the supplier over the window (clamped to the grant's, in SQL), one
        point or one per local day/week/month; ``cursor`` is the index of the first point."""
        scope = {"start": utc(start), "end": utc(end)}
        to = scope["end"] or datetime.now(UTC)
        since = scope["start"] or to - timedelta(days=1)
        if since >= to:
            raise ApiError(422, "invalid_request", "'from' must be before 'to'")

        async def work(
            allowed: access.Access,
        ) -> tuple[tuple[list[IndicatorPoint], str | None], int]:
            a, b = allowed.start or since, allowed.end or to
            if a >= b:
                return ([], None), 0
            cuts = [(a, b)]
            if bucket:
                async with ctx.pool().connection() as conn:
                    zone = await data.timezone_of(conn, allowed.dataset.enterprise_id)
                cuts = buckets(a, b, bucket, zone)
            nxt = str(cursor + limit) if cursor + limit < len(cuts) else None
            points = [
                IndicatorPoint(
                    start=lo, end=hi, indicators=await indicator_values(ctx, allowed, lo, hi)
                )
                for lo, hi in cuts[cursor : cursor + limit]
            ]
            return (points, nxt), len(points)

        allowed, (items, nxt) = await read(
            ctx,
            caller,
            dataset_id,
            "indicators",
            "data.indicators",
            purpose,
            scope,
            work,
            (since, to),
        )
        if format == "csv":
            rows = [
                {"from": p.start, "to": p.end, **i.model_dump(include=set(INDICATOR_COLUMNS[2:]))}
                for p in items
                for i in p.indicators
            ]
            return _csv(rows, nxt, INDICATOR_COLUMNS)
        page = IndicatorPage(
            dataset_id=dataset_id, grant_id=allowed.grant_id, items=items, next_cursor=nxt
        )
        return Response(page.model_dump_json(by_alias=True), media_type="application/json")

    row_endpoint("states", "Machine state changes (raw) or the last state per hour.")
    row_endpoint("counts", "Production part counters, raw or hourly mean/min/max.")
    row_endpoint(
        "alarms",
        "Alarms and events (raw: each one with its value; aggregated: per hour and name, the "
        "number and the last value).",
    )
    row_endpoint("telemetry", "Any telemetry series, raw (if granted) or hourly aggregates.")


INDICATOR_COLUMNS = ("from", "to", "name", "value", "numerator", "denominator")


def _csv(
    items: list[dict[str, Any]], nxt: str | None, columns: tuple[str, ...] = data.COLUMNS
) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for item in items:
        writer.writerow(jsonable_encoder(item))
    headers = {"X-Next-Cursor": nxt} if nxt else {}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)
