"""Partner data endpoints: indicator series, machine states, production counts, alarms and
events, telemetry.

Every call decides access afresh in one statement (:mod:`plantwire_platform.partner.access`),
reads with the scope enforced in SQL (:mod:`plantwire_platform.partner.data`), and answers only
once its audit entry, allowed or denied, is committed (by its route,
:class:`~plantwire_platform.partner.context.PartnerRoute`). Without ``to`` a window ends now.
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
from plantwire_platform.indicators import report as rsp
from plantwire_platform.indicators.formulas import FORMULA_VERSION, Thresholds
from plantwire_platform.indicators.jobs import indicators_job, lend, light
from plantwire_platform.indicators.shift_calendar import buckets
from plantwire_platform.partner import access, data
from plantwire_platform.partner.context import Id, Note, Noted, Who, utc
from plantwire_platform.partner.tokens import Caller
from plantwire_platform.translation import Text

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
    ts: datetime = Field(
        description="sample or event time (raw) or the start of a whole UTC hour (aggregated)"
    )
    site: str
    equipment: str
    metric: str = Field(description="metric name; for alarms and events the alarm's name")
    value: float | str | None = Field(description="raw value, hourly mean, or last state")
    min: float | None
    max: float | None
    n: int = Field(
        description="samples or events in the row (aggregated through a grant: at least "
        "partner_min_bucket_samples)"
    )


class RowPage(BaseModel):
    dataset_id: int
    grant_id: int | None = Field(description="null when reading the enterprise's own data")
    granularity: str = Field(description="raw or aggregated, as the grant (or dataset) says")
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
    purpose: str,
    scope: dict[str, Any],
    work: Callable[[access.Access], Awaitable[tuple[T, int]]],
    window: tuple[datetime | None, datetime | None] | None = None,
    grant_id: int | None = None,
    note: Note | None = None,
    action: str = "",
) -> tuple[access.Access, T]:
    """Decide, then read with ``work`` (which returns its result and the number of rows it
    gives out). Within a request, what was decided goes to its ``note`` (audited by the route
    before the answer leaves); outside one (live checks, webhooks), a denial is audited here as
    ``action`` and an allowed read by the caller when it sends the data. A denial is raised as
    :class:`ApiError`."""
    try:
        verdict = await access.decide(
            ctx.decider, caller, dataset_id, kind, purpose, scope, window, grant_id
        )
    except access.DecisionUnavailable as exc:
        raise ApiError(503, "unavailable", Text("access.unavailable")) from exc
    if note is not None:
        note.dataset_id = dataset_id
    if isinstance(verdict, access.Denial):
        if note is not None:
            note.supplier_id, note.grant_id = verdict.supplier_id, verdict.grant_id
        else:
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
    if note is not None:
        note.supplier_id, note.grant_id = verdict.dataset.enterprise_id, verdict.grant_id
        note.rows = rows
    return verdict, result


def granted_window(
    allowed: access.Access, start: datetime, end: datetime
) -> tuple[datetime, datetime]:
    """The window indicators are computed over: [start, end) clamped to the grant's window (in
    SQL, by the decision) and, through a grant, narrowed to whole hours, so that no window
    shorter than an hour gives single state changes away."""
    a, b = allowed.start or start, allowed.end or end
    if allowed.grant is None or a >= b:
        return a, b
    return data.whole_hours(a, b)


async def indicator_values(
    ctx: Context, allowed: access.Access, lo: datetime, hi: datetime, reuse: bool = True
) -> list[rsp.Indicator]:
    """The supplier's indicators over [lo, hi), reused while its data versions hold (not kept
    without ``reuse``: a window ending at this very moment is never asked for again)."""
    supplier, thresholds = allowed.dataset.enterprise_id, Thresholds()

    async def compute() -> list[rsp.Indicator]:
        if ctx.workers is not None and ctx.workload is not None and not light(lo, hi):
            async with ctx.workload.slot():
                return await ctx.workers.run(indicators_job, supplier, lo, hi, thresholds)
        async with ctx.pool().connection() as conn:
            return await indicators_job(lend(conn), supplier, lo, hi, thresholds)

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
    note: Note | None = None,
    action: str = "",
    grant_id: int | None = None,
) -> dict[str, Any]:
    """The granted indicators since ``start`` (default: the start of the last whole hour) up
    to now, clamped to the grant's window (through a grant: whole hours only); what live
    updates (stream and webhooks) send. Audited as :func:`read` says."""
    end = datetime.now(UTC)
    begin = start or data.whole_hours(end, end)[1] - timedelta(hours=1)

    async def work(
        allowed: access.Access,
    ) -> tuple[tuple[datetime, datetime, list[rsp.Indicator]], int]:
        a, b = granted_window(allowed, begin, end)
        if a >= b:
            return (a, b, []), 0
        values = await indicator_values(ctx, allowed, a, b, reuse=b < end)
        return (a, b, values), len(values)

    allowed, (a, b, values) = await read(
        ctx,
        caller,
        dataset_id,
        "indicators",
        purpose,
        {"start": start, "end": None},
        work,
        (begin, end),
        grant_id,
        note,
        action,
    )
    return {
        "dataset_id": dataset_id,
        "grant_id": allowed.grant_id,
        "from": a,
        "to": b,
        "indicators": [v.model_dump(mode="json") for v in values],
    }


def routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: data"]

    def row_endpoint(kind: str, doc: str) -> None:
        async def rows(
            caller: Who,
            note: Noted,
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
            until = end or datetime.now(UTC)  # an open window ends now
            if start and start >= until:
                raise ApiError(422, "invalid_request", Text("window.order"))
            try:
                data.decode_cursor(cursor)
            except ValueError:
                raise ApiError(422, "invalid_request", Text("cursor.malformed")) from None
            scope = {
                "sites": sites,
                "equipment": equipment,
                "fields": fields,
                "start": start,
                "end": end,
            }

            async def work(
                allowed: access.Access,
            ) -> tuple[tuple[list[dict[str, Any]], str | None], int]:
                params = {
                    "grant": allowed.grant_id,
                    "dataset": dataset_id,
                    "ent": caller.enterprise_id,
                    "limit": limit,
                    "cursor": cursor,
                    "k": ctx.settings.partner_min_bucket_samples,
                    **scope,
                    "end": until,
                }
                async with ctx.pool().connection() as conn:
                    page = await data.rows(conn, kind, params)
                return page, len(page[0])

            allowed, (items, nxt) = await read(
                ctx, caller, dataset_id, kind, purpose, scope, work, note=note
            )
            if format == "csv":
                return _csv(items, nxt)
            page = RowPage(
                dataset_id=dataset_id,
                grant_id=allowed.grant_id,
                granularity=allowed.granularity,
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
            name=f"data.{kind}",
        )(rows)

    @r.get(
        "/datasets/{dataset_id}/indicators",
        response_model=IndicatorPage,
        tags=tags,
        summary="Granted indicator series",
        responses={200: {"content": {"text/csv": {}}}},
        name="data.indicators",
    )
    async def indicator_series(
        caller: Who,
        note: Noted,
        dataset_id: Id,
        purpose: Purpose,
        start: From = None,
        end: To = None,
        bucket: Literal["day", "week", "month"] | None = None,
        cursor: Annotated[int, Query(ge=0, le=10_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 31,
        format: Format = "json",
    ) -> Any:
        """Indicators of the supplier over the window (default: the day up to now), clamped to
        the grant's (in SQL) and, through a grant, to whole hours; one point or one per local
        day/week/month; ``cursor`` is the index of the first point. At most
        ``partner_max_window_days`` days."""
        scope = {"start": utc(start), "end": utc(end)}
        to = scope["end"] or datetime.now(UTC)
        since = scope["start"] or to - timedelta(days=1)
        if since >= to:
            raise ApiError(422, "invalid_request", Text("window.order"))
        longest = ctx.settings.partner_max_window_days
        if to - since > timedelta(days=longest):
            raise ApiError(422, "invalid_request", Text("window.spans", days=longest))

        async def work(
            allowed: access.Access,
        ) -> tuple[tuple[list[IndicatorPoint], str | None], int]:
            a, b = granted_window(allowed, since, to)
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
            ctx, caller, dataset_id, "indicators", purpose, scope, work, (since, to), note=note
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
