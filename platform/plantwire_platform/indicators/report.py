"""Indicator results as report bodies: what the HTTP API and the partner interface return."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from plantwire_platform.indicators import enterprise as ind
from plantwire_platform.indicators.formulas import FORMULA_VERSION, Oee
from plantwire_platform.indicators.rollup import Share, roll_up


def _absent(value: object) -> bool:
    """Fields that only some reports have are left out where they do not apply; ``value`` is
    always there (``null`` when undefined)."""
    return value is None


class Window(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    defaulted: bool = Field(description="true when the caller gave no window")


class Indicator(BaseModel):
    name: str
    formula: str = Field(description="formula name and version")
    value: float | None = Field(
        description="ratio in [0, 1]; for a group the mean of its enterprises' values; "
        "null when undefined"
    )
    numerator: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="enterprises only; for a window across a registry change: duration-weighted",
    )
    denominator: float | None = Field(default=None, exclude_if=_absent)
    pooled: float | None = Field(
        default=None, exclude_if=_absent, description="groups: sum(num) / sum(den)"
    )
    enterprises: int | None = Field(
        default=None, exclude_if=_absent, description="groups: enterprises counted"
    )
    parameters: dict[str, float] = {}
    reason: str | None = Field(
        default=None, exclude_if=_absent, description="why the value is undefined, where known"
    )


class Bucket(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    indicators: list[Indicator]


class IndicatorReport(BaseModel):
    subject: dict[str, Any] = Field(description="the enterprise or group the values are about")
    window: Window
    indicators: list[Indicator]
    buckets: list[Bucket] | None = Field(
        default=None, exclude_if=_absent, description="with ?bucket="
    )
    members: list[dict[str, Any]] | None = Field(
        default=None, exclude_if=_absent, description="groups: each enterprise's own values"
    )


class ProcessVerdict(BaseModel):
    process: str
    name: str
    equipment: list[str]
    declared_nc: bool
    covered: bool
    verified_nc: bool
    coverage: float
    auto_share: float | None
    mdi_share: float | None
    reason: str


class SegmentExplanation(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    key_processes: list[ProcessVerdict]


class OeeBody(BaseModel):
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    planned_s: float
    run_s: float
    total_count: float
    scrap_count: float


class LineOee(OeeBody):
    site: str = Field(description="the code of the site the line belongs to")
    line: str = Field(description="the line's code (unique in its site only)")


LINES = (
    "each line's OEE, its equipment pooled; keyed by site/line, the codes of its site and its "
    "own (a code never holds a '/'), which 'site' and 'line' repeat"
)


class EquipmentExplanation(BaseModel):
    equipment: str
    site: str = Field(description="the code of the site the equipment belongs to")
    line: str
    observed_s: float
    executing_s: float
    auto_executing_s: float
    mdi_executing_s: float
    oee: OeeBody
    clock_offset_s: float | None = Field(
        default=None,
        description="how far the device's clock was off the gateway's, taken off its "
        "timestamps (in force at the window's end; null: within tolerance all along)",
    )
    clock_largest_offset_s: float | None = Field(
        default=None, description="the largest such correction in the window"
    )
    clock_jumps: int = Field(default=0, description="jumps of the device's clock (> 5 s)")


class OeeBucket(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    oee: OeeBody = Field(description="the enterprise's equipment pooled")
    lines: dict[str, LineOee] = Field(description=LINES)


class Explanation(BaseModel):
    subject: dict[str, Any]
    window: Window
    thresholds: dict[str, float]
    segments: list[SegmentExplanation] = Field(
        description="one per registry state in the window (usually one)"
    )
    equipment: list[EquipmentExplanation]
    lines: dict[str, LineOee] = Field(description=LINES)
    oee: OeeBody = Field(
        description="the enterprise's equipment pooled as a line's is: summed planned and "
        "EXECUTING time and counts, ideal cycles weighted by count"
    )
    buckets: list[OeeBucket] | None = Field(
        default=None,
        exclude_if=_absent,
        description="with ?bucket=: the OEE of each local day, week or month of the window",
    )


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def enterprise_indicators(result: ind.EnterpriseIndicators) -> list[Indicator]:
    t = result.thresholds
    params = {"coverage_min": t.coverage_min, "auto_share_min": t.auto_share_min}
    rows: list[tuple[str, tuple[float, float], dict[str, float]]] = [
        ("nc_rate_declared", result.weighted("declared"), {}),
        ("nc_rate_verified", result.weighted("verified"), params),
        ("nc_rate_time_weighted", result.weighted("time_weighted"), params),
        ("coverage", result.weighted("covered"), {"coverage_min": t.coverage_min}),
    ]
    out = [
        Indicator(
            name=name,
            formula=f"{name}/{FORMULA_VERSION}",
            value=_r(Share(n, d).value),
            numerator=_r(n),
            denominator=_r(d),
            parameters=p,
        )
        for name, (n, d), p in rows
    ]
    mdi, executing = result.mdi_time()
    out.append(
        Indicator(
            name="mdi_share",
            formula=f"mdi_share/{FORMULA_VERSION}",
            value=_r(result.mdi_share),
            numerator=_r(mdi),
            denominator=_r(executing),
        )
    )
    out.append(
        Indicator(
            name="networking_rate",
            formula=f"networking_rate/{FORMULA_VERSION}",
            value=_r(Share(result.equipment_online, result.equipment_registered).value),
            numerator=result.equipment_online,
            denominator=result.equipment_registered,
        )
    )
    if result.before_registry:
        since = result.registered_from
        reason = (
            f"before_registry: the enterprise's registry begins at {since.isoformat()}"
            if since is not None
            else "before_registry: the enterprise has no registry entries"
        )
        return [
            i.model_copy(update={"value": None, "numerator": None, "denominator": None,
                                 "reason": reason})
            for i in out
        ]  # fmt: skip
    return out


def group_indicators(results: list[tuple[dict[str, Any], list[Indicator]]]) -> list[Indicator]:
    """Each indicator of the members rolled up: mean of values beside the pooled ratio."""
    if not results:
        return []
    out = []
    for i, template in enumerate(results[0][1]):
        shares = [Share(r[1][i].numerator or 0.0, r[1][i].denominator or 0.0) for r in results]
        rolled = roll_up(shares)
        out.append(
            Indicator(
                name=template.name,
                formula=template.formula,
                value=_r(rolled.mean),
                pooled=_r(rolled.pooled),
                enterprises=rolled.enterprises,
                parameters=template.parameters,
            )
        )
    return out


def oee_body(o: Oee) -> OeeBody:
    return OeeBody(
        availability=_r(o.availability),
        performance=_r(o.performance),
        quality=_r(o.quality),
        oee=_r(o.oee),
        planned_s=round(o.planned_s, 1),
        run_s=round(o.run_s, 1),
        total_count=o.total_count,
        scrap_count=o.scrap_count,
    )


def line_key(site: str, line: str) -> str:
    """A line's key in ``lines``: ``site/line``, whatever the enterprise's other sites hold (a
    line code is unique only within its site, and a code never holds a ``/``)."""
    return f"{site}/{line}"


def line_bodies(lines: dict[tuple[str, str], Oee]) -> dict[str, LineOee]:
    """Each line's OEE keyed by :func:`line_key`, in the order of site and line codes."""
    return {
        line_key(site, line): LineOee(**oee_body(o).model_dump(), site=site, line=line)
        for (site, line), o in sorted(lines.items())
    }


def explanation(
    subject: dict[str, Any], window: Window, result: ind.EnterpriseIndicators
) -> Explanation:
    t = result.thresholds
    return Explanation(
        subject=subject,
        window=window,
        thresholds={"coverage_min": t.coverage_min, "auto_share_min": t.auto_share_min},
        segments=[
            SegmentExplanation(
                start=s.start,
                end=s.end,
                key_processes=[
                    ProcessVerdict(
                        process=v.process.code,
                        name=v.process.name,
                        equipment=[e.code for e in v.process.equipment],
                        declared_nc=v.declared_nc,
                        covered=v.covered,
                        verified_nc=v.verified_nc,
                        coverage=round(v.coverage, 4),
                        auto_share=_r(v.auto_share),
                        mdi_share=_r(v.mdi_share),
                        reason=v.reason,
                    )
                    for v in s.rates.verdicts
                ],
            )
            for s in result.segments
        ],
        equipment=[
            EquipmentExplanation(
                equipment=e.code,
                site=e.site,
                line=e.line,
                observed_s=round(e.usage.observed_s, 1),
                executing_s=round(e.usage.executing_s, 1),
                auto_executing_s=round(e.usage.auto_executing_s, 1),
                mdi_executing_s=round(e.usage.mdi_executing_s, 1),
                oee=oee_body(e.oee),
                clock_offset_s=None if e.clock is None else e.clock.offset_ms / 1000,
                clock_largest_offset_s=None if e.clock is None else e.clock.largest_ms / 1000,
                clock_jumps=0 if e.clock is None else e.clock.jumps,
            )
            for e in result.equipment
        ],
        lines=line_bodies(result.lines),
        oee=oee_body(result.oee),
    )


def oee_bucket(result: ind.EnterpriseIndicators) -> OeeBucket:
    """The OEE part of one bucket's computation (``with_oee``)."""
    return OeeBucket(
        start=result.start,
        end=result.end,
        oee=oee_body(result.oee),
        lines=line_bodies(result.lines),
    )
