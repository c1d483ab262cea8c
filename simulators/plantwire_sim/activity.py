"""What a machine really does, in canonical terms: its program, events and shift calendar.

The program repeats forever from a seeded phase. Events of the machine's
:class:`~plantwire_sim.params.Behaviour` interrupt EXECUTING program time (micro-stops, feed
holds, alarms with repair, MDI and manual interventions) and the interrupted segment resumes
with the time it had left. A site's shift calendar switches machines off between shifts, idles
them in breaks and opens every shift with setup; the program waits meanwhile.

Every random draw comes from ``random.Random`` seeded with the scenario seed, the machine code
and a purpose, so a (seed, machine, calendar, start) always gives the same moments.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from plantwire_bus.state import Execution, Mode

from .native import Alarm
from .params import Behaviour
from .scenario import Machine, Segment, Site
from .shifts import ShiftCalendar, Situation, parse_spans

EVENTS = ("micro_stop", "feed_hold", "alarm", "mdi", "manual")
"""Behaviour events, in the order ties between them are broken."""
_FOREVER = 2**62


@dataclass(frozen=True, slots=True)
class SegmentStart:
    """The machine enters a canonical state; ``index`` is the program segment it belongs to.

    ``cause`` is ``program`` for program segments (also when one resumes), else the event or
    calendar situation: ``micro_stop``, ``feed_hold``, ``alarm``, ``mdi``, ``manual``,
    ``setup``, ``break`` or ``off_shift``.
    """

    index: int
    mode: Mode
    execution: Execution
    cause: str = "program"


class Made(NamedTuple):
    """Parts completed at one instant (the end of an EXECUTING program segment)."""

    good: int
    scrap: int


@dataclass(frozen=True, slots=True)
class Moment:
    """Everything that happens to a machine at one instant."""

    ts_ms: int
    state: SegmentStart | None
    made: Made | None = None
    """The parts completed when an EXECUTING program segment ended here."""
    alarm: Alarm | None = None
    """An alarm raised here."""
    cleared: bool = False
    """The pending alarm was cleared here."""


def calendar_of(site: Site, line: str | None = None) -> ShiftCalendar | None:
    """The shift calendar of a line of the site (its own shifts and workdays, else the
    site's, and its maintenance windows), or of the site's machines on no line; None when
    its machines never stop for it."""
    found = next((x for x in site.lines if x.code == line), None)
    shifts = site.shifts if found is None or found.shifts is None else found.shifts
    workdays = site.workdays if found is None or found.workdays is None else found.workdays
    maintenance = () if found is None else found.maintenance
    calendar = ShiftCalendar(
        timezone=site.timezone,
        shifts=parse_spans(shifts),
        workdays=frozenset(workdays),
        breaks=parse_spans(site.breaks) if site.breaks.strip() else (),
        setup_minutes=site.setup_minutes,
        maintenance=tuple(sorted((_ms(w.start), _ms(w.end)) for w in maintenance)),
    )
    return None if calendar.always_on else calendar


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def segment_ms(segment: Segment) -> int:
    """A segment's duration in whole milliseconds (at least 1)."""
    return max(1, round(segment.seconds * 1000))


class Activity:
    """The canonical timeline of one machine."""

    def __init__(
        self,
        machine: Machine,
        seed: int,
        alarms: tuple[Alarm, ...] = (),
        calendar: ShiftCalendar | None = None,
    ) -> None:
        if not machine.program:
            raise ValueError(f"machine {machine.code}: no program to simulate")
        self.machine = machine
        self.seed = seed
        self.alarms = alarms or (Alarm(1, 500, "Machine fault"),)
        self.calendar = calendar
        self.behaviour: Behaviour = machine.behaviour
        self.durations_ms: tuple[int, ...] = tuple(segment_ms(s) for s in machine.program)
        self.cycle_ms: int = sum(self.durations_ms)
        phase = self.behaviour.phase_s
        self.phase_ms: int = (
            random.Random(self.stream("phase")).randrange(self.cycle_ms)
            if phase is None
            else round(phase * 1000) % self.cycle_ms
        )
        """Offset into the program cycle at the start time (seeded, or ``behaviour.phase_s``)."""

    def stream(self, purpose: str) -> str:
        """Seed of one random stream (str seeds are hashed with SHA-512: stable everywhere)."""
        return f"plantwire-sim/{self.seed}/{self.machine.code}/{purpose}"

    def locate(self, offset_ms: int) -> tuple[int, int]:
        """(segment index, ms into that segment) at ``offset_ms`` into the cycle."""
        offset_ms %= self.cycle_ms
        for index, duration in enumerate(self.durations_ms):
            if offset_ms < duration:
                return index, offset_ms
            offset_ms -= duration
        raise AssertionError("unreachable: offset beyond the cycle")

    def _situation(self, ts_ms: int) -> tuple[Situation, int]:
        if self.calendar is None:
            return "work", _FOREVER
        return self.calendar.situation(ts_ms)

    def _means(self) -> dict[str, tuple[float, float]]:
        b = self.behaviour
        spec = {
            "micro_stop": (b.micro_stop_every_s, b.micro_stop_s),
            "feed_hold": (b.feed_hold_every_s, b.feed_hold_s),
            "alarm": (b.alarm_every_s, b.repair_s),
            "mdi": (b.mdi_every_s, b.mdi_s),
            "manual": (b.manual_every_s, b.manual_s),
        }
        return {
            k: (every * 1000, dur * 1000) for k, (every, dur) in spec.items() if every is not None
        }

    def _made(self, draws: random.Random) -> Made:
        """The parts of one cycle: fixed counts, or each part scrapped at ``scrap_rate``."""
        b = self.behaviour
        if b.scrap_per_cycle is not None:
            return Made(b.parts_per_cycle - b.scrap_per_cycle, b.scrap_per_cycle)
        rate = b.scrap_rate
        scrap = sum(1 for _ in range(b.parts_per_cycle) if rate and draws.random() < rate)
        return Made(b.parts_per_cycle - scrap, scrap)

    def moments(self, t0_ms: int) -> Iterator[Moment]:
        """Endless moments from ``t0_ms``; the first one, at ``t0_ms``, gives the state."""
        program = self.machine.program
        events = random.Random(self.stream("events"))
        scrap = random.Random(self.stream("scrap"))
        alarms = random.Random(self.stream("alarms"))
        means = self._means()

        def gap(kind: str) -> int:
            return max(1, round(events.expovariate(1 / means[kind][0])))

        budgets = {kind: gap(kind) for kind in EVENTS if kind in means}
        index, into = self.locate(self.phase_ms)
        remaining = self.durations_ms[index] - into
        now = t0_ms
        situation, until = self._situation(now)
        need_enter = True
        state: SegmentStart | None = None
        part: Made | None = None
        raised: Alarm | None = None
        cleared = False

        while True:
            if now >= until:
                situation, until = self._situation(now)
            seg = program[index]
            if situation != "work":
                mode, execution, cause = {
                    "off": (Mode.UNKNOWN, Execution.OFF, "off_shift"),
                    "setup": (Mode.SETUP, Execution.IDLE, "setup"),
                    "break": (seg.mode, Execution.IDLE, "break"),
                    "maintenance": (Mode.SERVICE, Execution.IDLE, "maintenance"),
                }[situation]
                yield Moment(
                    now, SegmentStart(index, mode, execution, cause), part, raised, cleared
                )
                part, raised, cleared = None, None, False
                now, need_enter = until, True
                continue
            if need_enter:
                state, need_enter = SegmentStart(index, seg.mode, seg.execution), False
            executing = seg.execution is Execution.EXECUTING
            run = min(remaining, until - now)
            trigger: str | None = None
            if executing and budgets:
                first = min(budgets, key=budgets.__getitem__)
                if budgets[first] < run:
                    run, trigger = budgets[first], first
            if state is not None or part is not None or cleared:
                yield Moment(now, state, part, raised, cleared)
                state, part, raised, cleared = None, None, None, False
            now += run
            remaining -= run
            if executing:
                for kind in budgets:
                    budgets[kind] -= run
            if trigger is not None:
                budgets[trigger] = gap(trigger)
                duration = max(1, round(means[trigger][1] * events.uniform(0.5, 1.5)))
                mode, execution = {
                    "micro_stop": (seg.mode, Execution.PAUSED),
                    "feed_hold": (seg.mode, Execution.PAUSED),
                    "alarm": (seg.mode, Execution.FAULT),
                    "mdi": (Mode.MDI, Execution.EXECUTING),
                    "manual": (Mode.MANUAL, Execution.EXECUTING),
                }[trigger]
                alarm = alarms.choice(self.alarms) if trigger == "alarm" else None
                yield Moment(now, SegmentStart(index, mode, execution, trigger), alarm=alarm)
                now += duration
                cleared = alarm is not None
                need_enter = True
            elif remaining == 0:
                if executing:
                    part = self._made(scrap)
                index = (index + 1) % len(program)
                remaining = self.durations_ms[index]
                need_enter = True
