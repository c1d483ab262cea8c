"""Indicator formulas, pure: no database, no clock. Each formula carries a version.

Definitions (DESIGN.md, "Indicators"):

* ``nc_rate_declared`` (v1): key processes whose equipment is all declared NC ÷ key processes.
* ``coverage`` (v1): key processes whose equipment was all observed (online) for at least
  ``coverage_min`` of the window ÷ key processes.
* ``nc_rate_verified`` (v1): key processes that are covered and whose equipment, pooled, ran in
  mode AUTO for at least ``auto_share_min`` of its EXECUTING time ÷ key processes. Key processes
  without telemetry stay in the denominator. MDI never counts as automatic.
* ``networking_rate`` (v1): equipment with an online session in the window ÷ registered
  equipment.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from plantwire_bus.state import Execution, Mode
from plantwire_platform.indicators.shift_calendar import Interval, intersect, merge, seconds

FORMULA_VERSION = "v1"


COVERAGE_MIN = 0.9
AUTO_SHARE_MIN = 0.8


@dataclass(frozen=True, slots=True)
class Thresholds:
    coverage_min: float = COVERAGE_MIN
    auto_share_min: float = AUTO_SHARE_MIN


@dataclass(frozen=True, slots=True)
class StatePoint:
    """A change of the canonical mode or execution state, at the machine's timestamp."""

    ts: datetime
    kind: str  # "mode" | "execution"
    value: str | None


@dataclass(frozen=True, slots=True)
class Usage:
    """How one piece of equipment spent the window, in seconds."""

    observed_s: float = 0.0
    executing_s: float = 0.0
    auto_executing_s: float = 0.0
    mdi_executing_s: float = 0.0
    planned_s: float | None = None  # planned production time in the window, when known


@dataclass(frozen=True, slots=True)
class EquipmentRef:
    id: int
    code: str
    declared_nc: bool


@dataclass(frozen=True, slots=True)
class ProcessRef:
    id: int
    code: str
    name: str
    equipment: tuple[EquipmentRef, ...]


@dataclass(frozen=True, slots=True)
class ProcessVerdict:
    process: ProcessRef
    declared_nc: bool
    covered: bool
    verified_nc: bool
    coverage: float  # lowest share of the window any of its equipment was observed
    auto_share: float | None  # AUTO share of EXECUTING time, pooled over its equipment
    mdi_share: float | None
    reason: str
    executing_s: float = 0.0
    mdi_executing_s: float = 0.0


@dataclass(frozen=True, slots=True)
class NcRates:
    key_processes: int
    declared: int
    covered: int
    verified: int
    thresholds: Thresholds
    verdicts: tuple[ProcessVerdict, ...] = field(default=())

    @property
    def time_weighted(self) -> float:
        """Key processes credited with the AUTO share of their EXECUTING time (0 if uncovered)."""
        return sum(v.auto_share or 0.0 for v in self.verdicts if v.covered)

    @property
    def mdi_share(self) -> float | None:
        """MDI share of the EXECUTING time of covered key processes (never counted automatic)."""
        executing = sum(v.executing_s for v in self.verdicts if v.covered)
        mdi = sum(v.mdi_executing_s for v in self.verdicts if v.covered)
        return mdi / executing if executing > 0 else None


def usage_in_window(
    start: datetime,
    end: datetime,
    sessions: Iterable[tuple[datetime, datetime | None]],
    points: Sequence[StatePoint],
    planned: list[Interval] | None = None,
) -> Usage:
    """Integrate the state step functions over the time the equipment was online and planned.

    ``points`` must be sorted by time and may start before ``start`` (the state then in force).
    A session with no end is still open: it lasts to ``end``. ``planned`` (sorted, merged,
    inside the window) defaults to the whole window.
    """
    planned = planned if planned is not None else [(start, end)]
    online = merge((max(a, start), min(b or end, end)) for a, b in sessions)
    observed = intersect([iv for iv in online if iv[0] < iv[1]], planned)
    executing = auto = mdi = 0.0
    mode: str | None = None
    execution: str | None = None
    i = 0
    for a, b in observed:
        while i < len(points) and points[i].ts <= a:  # the state in force at a
            mode, execution = _apply(points[i], mode, execution)
            i += 1
        cursor = a
        while i < len(points) and points[i].ts < b:
            p = points[i]
            executing, auto, mdi = _accumulate(
                mode, execution, (p.ts - cursor).total_seconds(), executing, auto, mdi
            )
            mode, execution = _apply(p, mode, execution)
            cursor = p.ts
            i += 1
        executing, auto, mdi = _accumulate(
            mode, execution, (b - cursor).total_seconds(), executing, auto, mdi
        )
    return Usage(seconds(observed), executing, auto, mdi, seconds(planned))


def _apply(p: StatePoint, mode: str | None, execution: str | None) -> tuple[str | None, str | None]:
    return (p.value, execution) if p.kind == "mode" else (mode, p.value)


def _accumulate(
    mode: str | None,
    execution: str | None,
    seconds: float,
    executing: float,
    auto: float,
    mdi: float,
) -> tuple[float, float, float]:
    if execution == Execution.EXECUTING:
        executing += seconds
        if mode == Mode.AUTO:
            auto += seconds
        elif mode == Mode.MDI:
            mdi += seconds
    return executing, auto, mdi


def nc_rates(
    processes: Sequence[ProcessRef],
    usage: dict[int, Usage],
    window_s: float,
    thresholds: Thresholds = Thresholds(),
) -> NcRates:
    """Declared and verified NC rates of key processes, with a verdict per process."""
    verdicts = [_verdict(p, usage, window_s, thresholds) for p in processes]
    return NcRates(
        key_processes=len(verdicts),
        declared=sum(v.declared_nc for v in verdicts),
        covered=sum(v.covered for v in verdicts),
        verified=sum(v.verified_nc for v in verdicts),
        thresholds=thresholds,
        verdicts=tuple(verdicts),
    )


def _coverage(u: Usage, window_s: float) -> float:
    """Share of the planned time (the window when no calendar applies) the equipment was seen."""
    planned = u.planned_s if u.planned_s is not None else window_s
    return u.observed_s / planned if planned > 0 else 0.0


def _verdict(
    p: ProcessRef, usage: dict[int, Usage], window_s: float, t: Thresholds
) -> ProcessVerdict:
    declared = bool(p.equipment) and all(e.declared_nc for e in p.equipment)
    if not p.equipment:
        return ProcessVerdict(p, False, False, False, 0.0, None, None, "no equipment registered")
    uses = [usage.get(e.id, Usage()) for e in p.equipment]
    coverage = min(_coverage(u, window_s) for u in uses)
    coverage = min(coverage, 1.0)
    executing = sum(u.executing_s for u in uses)
    auto_share = sum(u.auto_executing_s for u in uses) / executing if executing > 0 else None
    mdi_share = sum(u.mdi_executing_s for u in uses) / executing if executing > 0 else None
    mdi_s = sum(u.mdi_executing_s for u in uses)
    extra = {"executing_s": executing, "mdi_executing_s": mdi_s}
    covered = coverage >= t.coverage_min
    if not covered:
        reason = f"covered {coverage:.0%} < {t.coverage_min:.0%} of the window"
        return ProcessVerdict(
            p, declared, False, False, coverage, auto_share, mdi_share, reason, **extra
        )
    if auto_share is None:
        reason = f"covered {coverage:.0%}, never EXECUTING in the window"
        return ProcessVerdict(p, declared, True, False, coverage, None, None, reason, **extra)
    verified = auto_share >= t.auto_share_min
    relation = ">=" if verified else "<"
    reason = (
        f"covered {coverage:.0%}, AUTO {auto_share:.0%} of EXECUTING time "
        f"{relation} {t.auto_share_min:.0%}"
    )
    return ProcessVerdict(
        p, declared, True, verified, coverage, auto_share, mdi_share, reason, **extra
    )


@dataclass(frozen=True, slots=True)
class Oee:
    """Overall equipment effectiveness and its three factors (v1); None when undefined."""

    availability: float | None
    performance: float | None
    quality: float | None
    planned_s: float
    run_s: float
    total_count: float
    scrap_count: float
    ideal_cycle_s: float | None

    @property
    def oee(self) -> float | None:
        factors = (self.availability, self.performance, self.quality)
        if any(f is None for f in factors):
            return None
        a, p, q = (f or 0.0 for f in factors)
        return a * p * q


def oee(
    planned_s: float, run_s: float, total: float, scrap: float, ideal_cycle_s: float | None
) -> Oee:
    """availability = run / planned time; performance = ideal cycle × count / run time (capped
    at 1); quality = (count − scrap) / count. Run time is EXECUTING time within planned time."""
    availability = run_s / planned_s if planned_s > 0 else None
    performance = None
    if ideal_cycle_s and run_s > 0:
        performance = min(ideal_cycle_s * total / run_s, 1.0)
    quality = (total - scrap) / total if total > 0 else None
    return Oee(availability, performance, quality, planned_s, run_s, total, scrap, ideal_cycle_s)


def counter_increase(values: Sequence[float]) -> float:
    """How much a monotonic counter rose over consecutive readings; a drop is a reset to 0."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


HOUR = timedelta(hours=1)


def utc_hour(t: datetime) -> datetime:
    """The UTC hour ``t`` falls in (the usage roll-up's hours are UTC hours, whatever the
    zone ``t`` is given in)."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def usage_by_hour(
    start: datetime,
    end: datetime,
    sessions: Iterable[tuple[datetime, datetime | None]],
    points: Sequence[StatePoint],
) -> dict[datetime, Usage]:
    """Usage of every whole UTC hour in [start, end) (both on hour boundaries), in one pass.

    Same semantics as :func:`usage_in_window` applied hour by hour with no shift calendar; used
    to build the hourly roll-up that long windows read.
    """
    online = [
        iv
        for iv in merge((max(a, start), min(b or end, end)) for a, b in sessions)
        if iv[0] < iv[1]
    ]
    acc: dict[datetime, list[float]] = {}
    hour = start
    while hour < end:
        acc[hour] = [0.0, 0.0, 0.0, 0.0]
        hour += HOUR
    for a, b in online:
        _spread(acc, a, b, 0)
    mode: str | None = None
    execution: str | None = None
    cursor: datetime | None = None
    for p in [*points, StatePoint(end, "end", None)]:
        ts = min(max(p.ts, start), end)
        if cursor is not None and ts > cursor and execution == Execution.EXECUTING:
            for a, b in intersect(online, [(cursor, ts)]):
                _spread(acc, a, b, 1)
                if mode == Mode.AUTO:
                    _spread(acc, a, b, 2)
                elif mode == Mode.MDI:
                    _spread(acc, a, b, 3)
        if p.kind == "end":
            break
        mode, execution = _apply(p, mode, execution)
        cursor = ts if cursor is None or ts > cursor else cursor
    return {h: Usage(v[0], v[1], v[2], v[3], 3600.0) for h, v in acc.items()}


def _spread(acc: dict[datetime, list[float]], a: datetime, b: datetime, slot: int) -> None:
    """Add the seconds of [a, b) to ``slot`` of each (UTC) hour they fall in."""
    hour = utc_hour(a)
    while hour < b:
        following = hour + HOUR
        lo, hi = max(a, hour), min(b, following)
        if lo < hi and hour in acc:
            acc[hour][slot] += (hi - lo).total_seconds()
        hour = following
