"""What really happened, computed from ground truth: intervals, counts and NC rates.

:func:`simulate` produces a scenario's truth without any server, in the same order as the
running factory (so a run's truth file equals the simulated one up to its end). The other
functions read truth records: state intervals per machine, time per (mode, execution), parts,
and the key-process NC rates an honest platform should report:

- declared: key processes whose equipment is all declared NC / key processes;
- truth-based (verified): key processes whose equipment is all simulated and ran in AUTO for
  at least ``auto_share_min`` of its EXECUTING time in the window / key processes (key
  processes without telemetry stay in the denominator).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from plantwire_bus.state import Execution, Mode

from .activity import calendar_of
from .behaviour import MachineBehaviour, Step
from .faults import FaultSpec
from .scenario import Scenario
from .truth import PartRecord, Record, StateRecord, TruthRecorder


def simulate(
    scenario: Scenario,
    start_ms: int,
    seconds: float,
    seed: int | None = None,
    truth: TruthRecorder | None = None,
    protocols: frozenset[str] = frozenset({"opcua", "modbus", "mqtt"}),
) -> TruthRecorder:
    """The truth of every simulated machine over [start, start + seconds], no servers."""
    seed = scenario.seed if seed is None else seed
    truth = truth if truth is not None else TruthRecorder()
    end_ms = start_ms + round(seconds * 1000)
    machines = [
        (s, m)
        for _, s, m in scenario.machines()
        if m.protocol in protocols and m.protocol != "none"
    ]
    order = {m.code: i for i, (_, m) in enumerate(machines)}
    streams: list[Iterator[Step]] = [
        MachineBehaviour(m, seed, calendar_of(s, m.line)).steps_from(start_ms) for s, m in machines
    ]
    heap: list[tuple[int, int, int, int, object]] = []
    counter = 0
    for i, stream in enumerate(streams):
        heap.append((start_ms, 1, i, counter, next(stream)))
        counter += 1
    for spec in scenario.faults:
        if spec.machine not in order:
            continue
        after = start_ms
        zone = scenario.timezone(machine=spec.machine)
        while (occurrence := spec.next_occurrence(start_ms, after, zone)) is not None:
            if occurrence[0] > end_ms:
                break
            heap.append((occurrence[0], 3, order[spec.machine], counter, (spec, occurrence)))
            counter += 1
            after = occurrence[0] + 1
    heapq.heapify(heap)
    while heap and heap[0][0] <= end_ms:
        ts, _, i, _, item = heapq.heappop(heap)
        code = machines[i][1].code
        if isinstance(item, Step):
            if item.made is not None:
                truth.record_made(code, ts, *item.made)
            if item.segment is not None:
                s = item.segment
                truth.record_state(code, ts, s.mode, s.execution, s.cause)
            if truth.values_wanted:
                for tag, value in item.writes:
                    truth.record_value(code, tag, value, ts)
            following = next(streams[i])
            heapq.heappush(heap, (following.ts_ms, 1, i, counter, following))
            counter += 1
        else:
            spec, (start, end) = cast("tuple[FaultSpec, tuple[int, int]]", item)
            truth.record_fault(code, spec.kind, start, end, "scenario")
    truth.flush()
    return truth


@dataclass(frozen=True, slots=True)
class Interval:
    machine: str
    start_ms: int
    end_ms: int
    mode: Mode
    execution: Execution
    cause: str


def intervals(records: Iterable[Record], end_ms: int) -> dict[str, list[Interval]]:
    """Each machine's state intervals, the last one closed at ``end_ms``."""
    states: dict[str, list[StateRecord]] = defaultdict(list)
    for r in records:
        if isinstance(r, StateRecord):
            states[r.machine].append(r)
    out: dict[str, list[Interval]] = {}
    for machine, recs in states.items():
        recs.sort(key=lambda r: r.ts_ms)
        ends = [r.ts_ms for r in recs[1:]] + [max(end_ms, recs[-1].ts_ms)]
        out[machine] = [
            Interval(machine, r.ts_ms, e, r.mode, r.execution, r.cause)
            for r, e in zip(recs, ends, strict=True)
        ]
    return out


def durations(
    spans: Iterable[Interval], start_ms: int, end_ms: int
) -> Counter[tuple[Mode, Execution]]:
    """Milliseconds per (mode, execution) inside [start_ms, end_ms)."""
    out: Counter[tuple[Mode, Execution]] = Counter()
    for i in spans:
        overlap = min(i.end_ms, end_ms) - max(i.start_ms, start_ms)
        if overlap > 0:
            out[(i.mode, i.execution)] += overlap
    return out


def parts(records: Iterable[Record], start_ms: int, end_ms: int) -> dict[str, tuple[int, int]]:
    """Machine -> (good, scrap) parts completed in [start_ms, end_ms)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if isinstance(r, PartRecord) and start_ms <= r.ts_ms < end_ms:
            out[r.machine][1 if r.scrap else 0] += r.count
    return {m: (g, s) for m, (g, s) in out.items()}


@dataclass(frozen=True, slots=True)
class ProcessVerdict:
    process: str
    equipment: tuple[str, ...]
    declared_nc: bool
    observed: bool
    executing_ms: int
    auto_ms: int
    verified_nc: bool

    @property
    def auto_share(self) -> float | None:
        return self.auto_ms / self.executing_ms if self.executing_ms else None


@dataclass(frozen=True, slots=True)
class NcRates:
    enterprise: str
    processes: tuple[ProcessVerdict, ...]

    @property
    def key_processes(self) -> int:
        return len(self.processes)

    @property
    def declared(self) -> int:
        return sum(p.declared_nc for p in self.processes)

    @property
    def verified(self) -> int:
        return sum(p.verified_nc for p in self.processes)

    @property
    def declared_rate(self) -> float:
        return self.declared / self.key_processes if self.processes else 0.0

    @property
    def verified_rate(self) -> float:
        return self.verified / self.key_processes if self.processes else 0.0


def nc_rates(
    scenario: Scenario,
    records: Iterable[Record],
    start_ms: int,
    end_ms: int,
    auto_share_min: float = 0.8,
) -> dict[str, NcRates]:
    """Declared and truth-based key-process NC rates per enterprise over [start, end)."""
    spans = intervals(records, end_ms)
    machines = {m.code: m for _, _, m in scenario.machines()}
    out: dict[str, NcRates] = {}
    for e in scenario.enterprises:
        verdicts = []
        for site in e.sites:
            for line in site.lines:
                for p in line.processes:
                    if not p.is_key:
                        continue
                    used = [machines[c] for c in p.equipment]
                    observed = bool(used) and all(m.code in spans for m in used)
                    time = Counter[tuple[Mode, Execution]]()
                    for m in used:
                        time += durations(spans.get(m.code, ()), start_ms, end_ms)
                    executing = sum(v for (_, x), v in time.items() if x is Execution.EXECUTING)
                    auto = time[(Mode.AUTO, Execution.EXECUTING)]
                    verified = observed and executing > 0 and auto >= auto_share_min * executing
                    verdicts.append(
                        ProcessVerdict(
                            p.code,
                            p.equipment,
                            bool(used) and all(m.declared_nc for m in used),
                            observed,
                            executing,
                            auto,
                            verified,
                        )
                    )
        out[e.code] = NcRates(e.code, tuple(verdicts))
    return out
