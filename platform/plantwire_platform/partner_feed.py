"""Partner data endpoints: indicator series, machine states, production counts, telemetry.

Each call decides access afresh from the database (visibility, grade, grant status, purpose,
scope), audits the outcome, then reads with the scope enforced in SQL
(:mod:`plantwire_platform.partner_data`).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from psycopg import AsyncConnection
from pydantic import BaseModel, Field

from plantwire_platform import indicators as ind
from plantwire_platform import partner_catalog as catalog
from plantwire_platform import partner_data as data
from plantwire_platform import partner_grants as grants
from plantwire_platform import responses as rsp
from plantwire_platform.kpi import Thresholds
from plantwire_platform.partner_api import Conn, Id, PartnerError, Who, record
from plantwire_platform.partner_tokens import Caller
from plantwire_platform.shift_calendar import buckets

if TYPE_CHECKING:
    from plantwire_platform.partner_api import Context

DbId = Annotated[int, Field(ge=1, le=2**62)]
Purpose = Annotated[str, Query(min_length=1, max_length=64, description="why the data is read")]
From = Annotated[datetime | None, Query(alias="from", description="ISO 8601, inclusive")]
To = Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive")]
Format = Annotated[Literal["json", "csv"], Query(description="output format")]
IdList = Annotated[list[DbId] | None, Query(max_length=100)]
Fields = Annotated[list[Annotated[str, Field(max_length=200)]] | None, Query(max_length=100)]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Cursor = Annotated[str | None, Query(max_length=200)]


class Row(BaseModel):
    ts: datetime = Field(description="sample time (raw) or hour start (aggregated)")
    site: str
    equipment: str
    metric: str
    value: float | str | None = Field(description="raw value, hourly mean, or last state")
    min: float | None
    max: float | None
    n: int = Field(description="samples in the row")


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


async def access(
    conn: AsyncConnection[Any],
    caller: Caller,
    dataset_id: int,
    kind: str,
    purpose: str,
    scope: dict[str, Any],
) -> tuple[catalog.Dataset, int | None]:
    """The dataset and the grant that allow this read (None: own data); a denial is audited
    and raised."""
    action = f"data.{kind}"

    async def deny(
        status: int, reason: str, d: catalog.Dataset | None, grant: int | None, detail: str
    ) -> PartnerError:
        await record(
            conn,
            caller,
            supplier_id=d.enterprise_id if d else None,
            dataset_id=dataset_id,
            grant_id=grant,
            action=action,
            outcome="denied",
            reason=reason,
            status=status,
        )
        return PartnerError(status, reason, detail)

    if caller.enterprise_id is None:
        raise await deny(403, "role_forbidden", None, None, "platform admins read no data")
    d = await catalog.visible(conn, caller.enterprise_id, dataset_id)
    if d is None or d.kind != kind:
        raise await deny(404, "not_found", None, None, f"no {kind} dataset {dataset_id}")
    if d.enterprise_id == caller.enterprise_id:
        return d, None
    if d.grade == "core":
        raise await deny(403, "grade_forbidden", d, None, "core data is never shared")
    held = await grants.of_partner(conn, d.id, caller.enterprise_id)
    grant_id, reason = grants.decide([grants.candidate(g) for g in held], purpose)
    if grant_id is None:
        raise await deny(403, reason or "no_grant", d, None, f"{reason} for purpose {purpose!r}")
    g = next(g for g in held if g.id == grant_id)
    problem = _outside(g, scope)
    if problem:
        raise await deny(403, "out_of_scope", d, grant_id, problem)
    return d, grant_id


def _outside(g: grants.Grant, scope: dict[str, Any]) -> str:
    """What part of the request lies outside the grant ('' if none)."""
    for name, granted in (
        ("sites", g.site_ids),
        ("equipment", g.equipment_ids),
        ("fields", g.fields),
    ):
        asked = scope.get(name)
        if asked is not None and granted is not None and not set(asked) <= set(granted):
            return f"{name} outside the grant"
    start, end = scope.get("start"), scope.get("end")
    if start is not None and g.window_start is not None and start < g.window_start:
        return "'from' is before the granted window"
    if end is not None and g.window_end is not None and end > g.window_end:
        return "'to' is after the granted window"
    return ""


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def routes(r: APIRouter, ctx: Context) -> None:
    tags: list[str | Any] = ["partner: data"]

    def row_endpoint(kind: str, doc: str) -> None:
        async def read(
            conn: Conn,
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
            start, end = _aware(start), _aware(end)
            if start and end and start >= end:
                raise PartnerError(422, "invalid_request", "'from' must be before 'to'")
            scope = {
                "sites": sites,
                "equipment": equipment,
                "fields": fields,
                "start": start,
                "end": end,
            }
            d, grant_id = await access(conn, caller, dataset_id, kind, purpose, scope)
            params = {
                "grant": grant_id,
                "dataset": dataset_id,
                "ent": caller.enterprise_id,
                "limit": limit,
                "cursor": cursor,
                **scope,
            }
            try:
                items, nxt, granularity = await data.rows(conn, kind, params)
            except ValueError as exc:
                raise PartnerError(422, "invalid_request", str(exc)) from None
            await record(
                conn,
                caller,
                supplier_id=d.enterprise_id,
                dataset_id=dataset_id,
                grant_id=grant_id,
                action=f"data.{kind}",
                outcome="allowed",
                status=200,
                rows=len(items),
            )
            if format == "csv":
                return _csv(items, nxt)
            return RowPage(
                dataset_id=dataset_id,
                grant_id=grant_id,
                granularity=granularity,
                items=[Row(**i) for i in items],
                next_cursor=nxt,
            )

        read.__doc__ = doc
        r.get(
            f"/datasets/{{dataset_id}}/{kind}",
            response_model=RowPage,
            tags=tags,
            summary=f"Granted {kind}",
            responses={200: {"content": {"text/csv": {}}}},
        )(read)

    row_endpoint("states", "Machine state changes (raw) or the last state per hour.")
    row_endpoint("counts", "Production part counters, raw or hourly mean/min/max.")
    row_endpoint("telemetry", "Any telemetry series, raw (if granted) or hourly aggregates.")

    @r.get(
        "/datasets/{dataset_id}/indicators",
        response_model=IndicatorPage,
        tags=tags,
        summary="Granted indicator series",
        responses={200: {"content": {"text/csv": {}}}},
    )
    async def indicator_series(
        conn: Conn,
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
        scope = {"start": _aware(start), "end": _aware(end)}
        end = scope["end"] or datetime.now(UTC)
        start = scope["start"] or end - timedelta(days=1)
        if start >= end:
            raise PartnerError(422, "invalid_request", "'from' must be before 'to'")
        d, grant_id = await access(conn, caller, dataset_id, "indicators", purpose, scope)
        window = await data.indicator_window(
            conn,
            {
                "grant": grant_id,
                "dataset": dataset_id,
                "ent": caller.enterprise_id,
                "start": start,
                "end": end,
            },
        )
        items: list[IndicatorPoint] = []
        nxt = None
        if window is not None and window[1] < window[2]:
            supplier, a, b = window
            cuts = [(a, b)]
            if bucket:
                cuts = buckets(a, b, bucket, await data.timezone_of(conn, supplier))
            page = cuts[cursor : cursor + limit]
            nxt = str(cursor + limit) if cursor + limit < len(cuts) else None
            for lo, hi in page:

                async def compute(lo: datetime = lo, hi: datetime = hi) -> list[rsp.Indicator]:
                    result = await ind.enterprise_indicators(conn, supplier, lo, hi, Thresholds())
                    return rsp.enterprise_indicators(result)

                values = await ctx.cache.get((supplier, lo, hi), compute)
                items.append(IndicatorPoint(start=lo, end=hi, indicators=values))
        await record(
            conn,
            caller,
            supplier_id=d.enterprise_id,
            dataset_id=dataset_id,
            grant_id=grant_id,
            action="data.indicators",
            outcome="allowed",
            status=200,
            rows=len(items),
        )
        if format == "csv":
            rows = [
                {"from": p.start, "to": p.end, **i.model_dump(include=set(INDICATOR_COLUMNS[2:]))}
                for p in items
                for i in p.indicators
            ]
            return _csv(rows, nxt, INDICATOR_COLUMNS)
        return IndicatorPage(dataset_id=dataset_id, grant_id=grant_id, items=items, next_cursor=nxt)


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
