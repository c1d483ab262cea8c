"""The indicators an honest platform should report, computed from ground truth alone.

Inputs are a scenario and the truth records of a run (see :mod:`plantwire_sim.truth`); no
platform code is used. The definitions are those of DESIGN.md ("Indicators") and issue 6:

- planned time: a machine's line's shifts on its workdays (else its site's), in its site's
  time zone, minus the line's planned maintenance windows (breaks and setup are planned time;
  between shifts and in maintenance nothing is planned);
- observed time: the window for a machine with telemetry, minus the intervals in which its
  interface was down (``restart``, ``drop`` and ``silent`` faults; an OPC UA server restart
  takes every machine it serves down); a machine without telemetry is never observed;
- a key process is *covered* when each of its machines was observed for at least
  ``coverage_min`` of its planned time, *declared NC* when all its machines are declared NC
  and *verified NC* when covered and its machines, pooled, ran in AUTO for at least
  ``auto_share_min`` of their EXECUTING time (observed and planned); the time-weighted rate
  credits a covered key process with that AUTO share; the MDI share is MDI over EXECUTING
  time of covered key processes;
- networking rate: machines whose interface could be read at some time in the window (planned
  or not) ÷ machines;
- OEE per machine: availability = EXECUTING time (observed, planned) ÷ planned time,
  performance = ideal cycle × parts ÷ that time (at most 1), quality = good ÷ parts, where
  parts are those completed in the window by a machine that counts them, as its counters
  show them: all of the window's when its interface could be read at the window's start
  (the counter's baseline is read then), else those completed after it could first be read
  in the window (the first reading is the baseline), and none when it never could (a machine
  that never connected); per line (a site's: two sites' lines of one code are two lines) the
  machines' times and counts are pooled (performance over the machines with an ideal cycle);
- a group of enterprises (chain, park, region) reports the mean of its enterprises' rates
  beside the pooled ratio;
- a registry change inside the window (``registry`` records: a machine re-declared NC or not)
  cuts the window of the machine's enterprise: each part is computed with the registry valid
  in it (its own coverage, over its own planned time) and the counts of the key-process
  rates are averaged by duration, so numerators and denominators may be fractional; the MDI
  share pools the parts' covered processes; networking and OEE are over the whole window;
- an uplink outage of a site (``outage`` records) blinds nothing: its gateway kept reading the
  machines and forwards what it read (store and forward), so they stay observed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plantwire_bus.state import GOOD_COUNT_METRIC, PART_COUNT_METRIC, Execution, Mode

from .activity import calendar_of
from .behaviour import profile_of
from .placement import plan
from .scenario import Enterprise, Machine, Scenario, Site
from .scorecard import Interval, intervals
from .truth import FaultRecord, PartRecord, Record, RegistryRecord

Span = tuple[int, int]
BLINDING = frozenset({"restart", "drop", "silent"})
"""Faults during which a machine's interface cannot be read at all."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    coverage_min: float = 0.9
    auto_share_min: float = 0.8


@dataclass(frozen=True, slots=True)
class MachineTime:
    """How one machine spent the window (milliseconds; times inside observed ∩ planned)."""

    code: str
    site: str
    line: str
    """Its line's code, unique only within ``site``."""
    online_ms: int
    """Time in the window its interface could be read (planned or not)."""
    planned_ms: int
    observed_ms: int
    """Planned time its interface could be read."""
    executing_ms: int
    auto_ms: int
    mdi_ms: int
    counts_parts: bool
    parts: int
    scrap: int
    ideal_cycle_s: float | None

    @property
    def coverage(self) -> float:
        return min(self.observed_ms / self.planned_ms, 1.0) if self.planned_ms else 0.0


@dataclass(frozen=True, slots=True)
class Oee:
    availability: float | None
    performance: float | None
    quality: float | None

    @property
    def oee(self) -> float | None:
        a, p, q = self.availability, self.performance, self.quality
        return None if a is None or p is None or q is None else a * p * q


@dataclass(frozen=True, slots=True)
class ProcessTruth:
    code: str
    equipment: tuple[str, ...]
    declared_nc: bool
    covered: bool
    verified_nc: bool
    auto_share: float | None
    executing_ms: int
    mdi_ms: int


@dataclass(frozen=True, slots=True)
class EnterpriseTruth:
    code: str
    processes: tuple[ProcessTruth, ...]
    """The key processes' verdicts with the registry valid at the window's end."""
    machines: dict[str, MachineTime] = field(default_factory=dict)
    segments: tuple[tuple[float, tuple[ProcessTruth, ...]], ...] = ()
    """(share of the window, verdicts) of each part with one registry (default: one part,
    ``processes``)."""

    def rate(self, name: str) -> tuple[float, float]:
        """(numerator, denominator) of an indicator, by its API name."""
        if name == "mdi_share":
            covered = [p for _, ps in self._parts() for p in ps if p.covered]
            mdi, executing = (sum(p.mdi_ms for p in covered), sum(p.executing_ms for p in covered))
            return mdi / 1000, executing / 1000
        if name == "networking_rate":
            online = sum(m.online_ms > 0 for m in self.machines.values())
            return online, len(self.machines)
        num = den = 0.0
        for weight, ps in self._parts():
            n, d = _count(name, ps)
            num, den = num + weight * n, den + weight * d
        return num, den

    def _parts(self) -> tuple[tuple[float, tuple[ProcessTruth, ...]], ...]:
        return self.segments or ((1.0, self.processes),)

    def value(self, name: str) -> float | None:
        num, den = self.rate(name)
        return num / den if den > 0 else None

    def oee(self, machine: str) -> Oee:
        return pooled_oee([self.machines[machine]])

    def line_oee(self) -> dict[tuple[str, str], Oee]:
        """Each line's OEE by (site, line): two sites' lines of one code are two lines."""
        by_line: dict[tuple[str, str], list[MachineTime]] = defaultdict(list)
        for m in self.machines.values():
            by_line[(m.site, m.line)].append(m)
        return {line: pooled_oee(ms) for line, ms in by_line.items()}


def _count(name: str, ps: Sequence[ProcessTruth]) -> tuple[float, int]:
    """(numerator, key processes) of a key-process rate over one registry state."""
    covered = [p for p in ps if p.covered]
    if name == "nc_rate_declared":
        return sum(p.declared_nc for p in ps), len(ps)
    if name == "nc_rate_verified":
        return sum(p.verified_nc for p in ps), len(ps)
    if name == "nc_rate_time_weighted":
        return sum(p.auto_share or 0.0 for p in covered), len(ps)
    if name == "coverage":
        return len(covered), len(ps)
    raise KeyError(name)


INDICATORS = (
    "nc_rate_declared",
    "nc_rate_verified",
    "nc_rate_time_weighted",
    "coverage",
    "mdi_share",
    "networking_rate",
)


def pooled_oee(machines: Sequence[MachineTime]) -> Oee:
    planned = sum(m.planned_ms for m in machines)
    run = sum(m.executing_ms for m in machines)
    total = sum(m.parts for m in machines if m.counts_parts)
    scrap = sum(m.scrap for m in machines if m.counts_parts)
    timed = [m for m in machines if m.ideal_cycle_s]
    run_timed = sum(m.executing_ms for m in timed)
    ideal_ms = sum((m.ideal_cycle_s or 0.0) * 1000 * m.parts for m in timed if m.counts_parts)
    return Oee(
        availability=run / planned if planned else None,
        performance=min(ideal_ms / run_timed, 1.0) if timed and run_timed else None,
        quality=(total - scrap) / total if total else None,
    )


def roll_up(shares: Iterable[tuple[float, float]]) -> tuple[float | None, float | None, int]:
    """(mean of the defined rates, pooled ratio, enterprises with a defined rate)."""
    shares = list(shares)
    values = [n / d for n, d in shares if d > 0]
    num, den = sum(n for n, _ in shares), sum(d for _, d in shares)
    mean = sum(values) / len(values) if values else None
    return mean, (num / den if den > 0 else None), len(values)


def planned_spans(site: Site, start_ms: int, end_ms: int, line: str | None = None) -> list[Span]:
    """When a line of the site (default: the site) plans production inside [start, end):
    every moment in one of its shifts and not in its planned maintenance."""
    calendar = calendar_of(site, line)
    if calendar is None:
        return [(start_ms, end_ms)]
    out: list[Span] = []
    t = start_ms
    while t < end_ms:
        situation, until = calendar.situation(t)
        until = min(until, end_ms)
        if situation not in ("off", "maintenance"):
            if out and out[-1][1] == t:
                out[-1] = (out[-1][0], until)
            else:
                out.append((t, until))
        t = until
    return out


def interface_down(scenario: Scenario, records: Iterable[Record]) -> dict[str, list[Span]]:
    """Machine -> intervals in which its interface could not be read (blinding faults)."""
    hosts: dict[str, tuple[str, ...]] = {}
    for host in plan(scenario, frozenset({"opcua"})).opcua:
        for code in host.machines:
            hosts[code] = tuple(host.machines)
    out: dict[str, list[Span]] = defaultdict(list)
    for r in records:
        if isinstance(r, FaultRecord) and r.fault in BLINDING:
            together = hosts.get(r.machine, (r.machine,)) if r.fault == "restart" else ()
            for code in together or (r.machine,):
                out[code].append((r.start_ms, r.end_ms))
    return dict(out)


def expected(
    scenario: Scenario,
    records: Sequence[Record],
    start_ms: int,
    end_ms: int,
    thresholds: Thresholds = Thresholds(),
) -> dict[str, EnterpriseTruth]:
    """Every enterprise's indicators over [start_ms, end_ms), from the truth records."""
    spans = intervals(records, end_ms)
    down = interface_down(scenario, records)
    made: dict[str, list[PartRecord]] = defaultdict(list)
    for r in records:
        if isinstance(r, PartRecord) and start_ms <= r.ts_ms < end_ms:
            made[r.machine].append(r)
    changes = sorted((r for r in records if isinstance(r, RegistryRecord)), key=lambda r: r.ts_ms)
    declared = {m.code: m.declared_nc for _, _, m in scenario.machines()}

    def declared_at(code: str, at: int) -> bool:
        return next(
            (r.declared_nc for r in reversed(changes) if r.machine == code and r.ts_ms <= at),
            declared[code],
        )

    def times(e: Enterprise, a: int, b: int) -> dict[str, MachineTime]:
        out = {}
        for site in e.sites:
            plans = {line.code: planned_spans(site, a, b, line.code) for line in site.lines}
            for m in site.machines:
                planned = plans[m.line]
                observed = [] if m.protocol == "none" else _minus([(a, b)], down.get(m.code, []))
                counted = _counted(made.get(m.code, []), observed, a)
                states = spans.get(m.code, [])
                out[m.code] = _machine_time(m, site.code, planned, observed, states, counted)
        return out

    out = {}
    for e in scenario.enterprises:
        machines = times(e, start_ms, end_ms)
        cuts = sorted(
            {start_ms, end_ms}
            | {r.ts_ms for r in changes if r.machine in machines and start_ms < r.ts_ms < end_ms}
        )
        segments = []
        for a, b in itertools.pairwise(cuts):
            part = machines if (a, b) == (start_ms, end_ms) else times(e, a, b)
            verdicts = tuple(
                _process(
                    p.code,
                    p.equipment,
                    [part[c] for c in p.equipment],
                    bool(p.equipment) and all(declared_at(c, a) for c in p.equipment),
                    thresholds,
                )
                for site in e.sites
                for line in site.lines
                for p in line.processes
                if p.is_key
            )
            segments.append(((b - a) / (end_ms - start_ms), verdicts))
        out[e.code] = EnterpriseTruth(e.code, segments[-1][1], machines, tuple(segments))
    return out


def _counted(made: Sequence[PartRecord], observed: list[Span], start_ms: int) -> tuple[int, int]:
    """(good, scrap) of a machine's parts in the window that its counters show: from the
    window's start when it could be read then, else from when it first could (the parts
    made at that instant are in the first reading, the baseline), none if it never could."""
    if not observed:
        return 0, 0
    first = observed[0][0]
    seen = [r for r in made if r.ts_ms > first or first <= start_ms]
    return (sum(r.count for r in seen if not r.scrap), sum(r.count for r in seen if r.scrap))


def _machine_time(
    m: Machine,
    site: str,
    planned: list[Span],
    observed: list[Span],
    states: Sequence[Interval],
    made: tuple[int, int],
) -> MachineTime:
    seen = _intersect(observed, planned)
    executing = auto = mdi = 0
    for s in states:
        if s.execution is not Execution.EXECUTING:
            continue
        overlap = _length(_intersect(seen, [(s.start_ms, s.end_ms)]))
        executing += overlap
        auto += overlap if s.mode is Mode.AUTO else 0
        mdi += overlap if s.mode is Mode.MDI else 0
    counts = m.protocol != "none" and any(
        t.metric in (PART_COUNT_METRIC, GOOD_COUNT_METRIC) for t in profile_of(m).tags if t.core
    )
    good, scrap = made
    return MachineTime(
        m.code,
        site,
        m.line,
        _length(observed),
        _length(planned),
        _length(seen),
        executing,
        auto,
        mdi,
        counts,
        good + scrap,
        scrap,
        m.ideal_cycle_s,
    )


def _process(
    code: str,
    equipment: tuple[str, ...],
    times: list[MachineTime],
    declared: bool,
    t: Thresholds,
) -> ProcessTruth:
    covered = bool(times) and min(m.coverage for m in times) >= t.coverage_min
    executing = sum(m.executing_ms for m in times)
    auto_share = sum(m.auto_ms for m in times) / executing if executing else None
    verified = covered and auto_share is not None and auto_share >= t.auto_share_min
    return ProcessTruth(
        code,
        equipment,
        declared,
        covered,
        verified,
        auto_share,
        executing,
        sum(m.mdi_ms for m in times),
    )


def _intersect(xs: list[Span], ys: list[Span]) -> list[Span]:
    out = []
    for a, b in xs:
        for c, d in ys:
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return sorted(out)


def _minus(xs: list[Span], ys: list[Span]) -> list[Span]:
    out = []
    for a, b in xs:
        cursor = a
        for c, d in sorted(ys):
            if d <= cursor or c >= b:
                continue
            if c > cursor:
                out.append((cursor, c))
            cursor = max(cursor, d)
        if cursor < b:
            out.append((cursor, b))
    return out


def _length(spans: Iterable[Span]) -> int:
    return sum(b - a for a, b in spans)
