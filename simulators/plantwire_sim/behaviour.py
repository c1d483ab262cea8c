"""Deterministic behaviour of a simulated machine: canonical activity rendered as native tags.

:class:`~plantwire_sim.activity.Activity` says what the machine really does (program, events,
shift calendar); the machine's profile (:mod:`~plantwire_sim.cnc`, :mod:`~plantwire_sim.moulding`,
:mod:`~plantwire_sim.legacy`, :mod:`~plantwire_sim.station`, :mod:`~plantwire_sim.meter`) renders
each moment into native tag values. Analog values are re-drawn at every change of activity and
every ``behaviour.sample_s`` after it while the profile samples (a CNC while executing, an
energy box always). A tag is written only when its value changes. Timestamps are whole
milliseconds since the epoch; the same (seed, machine, calendar, start) always gives the same
steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from plantwire_bus.state import Execution, Mode

from .activity import Activity, Made, SegmentStart, segment_ms
from .cnc import (
    MACHINE_OPERATION_MODE,
    MACHINE_OPERATION_MODE_OF,
    PART_COUNT,
    PROGRAM_STATUS,
    PROGRAM_STATUS_OF,
    SPINDLE_NOISE,
    SPINDLE_SPEED,
    CncProfile,
)
from .legacy import LegacyProfile
from .meter import EnergyProfile
from .moulding import InjectionProfile
from .native import Profile, Snapshot, TagValue
from .params import CncParams, EnergyParams, InjectionParams, LegacyParams, StationParams
from .scenario import Machine
from .shifts import ShiftCalendar
from .station import StationProfile

__all__ = [
    "MACHINE_OPERATION_MODE",
    "MACHINE_OPERATION_MODE_OF",
    "PART_COUNT",
    "PROGRAM_STATUS",
    "PROGRAM_STATUS_OF",
    "SPINDLE_NOISE",
    "SPINDLE_SPEED",
    "TAGS",
    "MachineBehaviour",
    "SegmentStart",
    "Step",
    "TagValue",
    "TagWrite",
    "machine_operation_mode",
    "profile_of",
    "program_status",
    "segment_ms",
    "to_ms",
]

TAGS: tuple[str, ...] = (MACHINE_OPERATION_MODE, PROGRAM_STATUS, SPINDLE_SPEED, PART_COUNT)
"""The CNC's state, spindle and part-count tags, the first it writes."""
SPINDLE_REDRAW_MS = 1000
"""Default re-sampling interval (``behaviour.sample_s`` = 1)."""


class TagWrite(NamedTuple):
    """One native tag value to write."""

    tag: str
    value: TagValue


@dataclass(frozen=True, slots=True)
class Step:
    """Everything that changes at one instant: a state change and/or tag writes."""

    ts_ms: int
    segment: SegmentStart | None
    writes: tuple[TagWrite, ...]
    made: Made | None = None
    """The parts completed at this instant (good, scrap)."""

    def values(self) -> dict[str, TagValue]:
        """The writes as a tag -> value mapping."""
        return {w.tag: w.value for w in self.writes}


def machine_operation_mode(mode: Mode) -> int:
    """Native OPC 40501-1 MachineOperationMode for a canonical mode (MDI -> 0 Manual)."""
    return MACHINE_OPERATION_MODE_OF[mode]


def program_status(execution: Execution) -> int:
    """Native OPC 40502 CncChannelProgramStatus for a canonical execution state."""
    return PROGRAM_STATUS_OF[execution]


def to_ms(t: float) -> int:
    """Epoch seconds to whole epoch milliseconds."""
    return round(t * 1000)


def profile_of(machine: Machine) -> Profile:
    """The native vocabulary of a machine, from its profile parameters."""
    params = machine.params
    if isinstance(params, CncParams):
        return CncProfile(params, machine.spindle_rpm)
    if isinstance(params, InjectionParams):
        return InjectionProfile(params)
    if isinstance(params, LegacyParams):
        return LegacyProfile(params)
    if isinstance(params, StationParams):
        return StationProfile(params)
    if isinstance(params, EnergyParams):
        return EnergyProfile(params)
    raise ValueError(f"machine {machine.code}: no profile to simulate")


class MachineBehaviour:
    """The native timeline of one machine."""

    def __init__(
        self,
        machine: Machine,
        seed: int,
        calendar: ShiftCalendar | None = None,
    ) -> None:
        self.machine = machine
        self.seed = seed
        self.profile = profile_of(machine)
        self.activity = Activity(machine, seed, self.profile.alarms, calendar)
        self.durations_ms = self.activity.durations_ms
        self.cycle_ms = self.activity.cycle_ms
        self.phase_ms = self.activity.phase_ms
        self.sample_ms = max(1, round(machine.behaviour.sample_s * 1000))

    def locate(self, offset_ms: int) -> tuple[int, int]:
        """(segment index, ms into that segment) at ``offset_ms`` into the cycle."""
        return self.activity.locate(offset_ms)

    def steps(self, t0: float) -> Iterator[Step]:
        """Endless timeline from ``t0`` (epoch seconds), see :meth:`steps_from`."""
        return self.steps_from(to_ms(t0))

    def steps_from(self, t0_ms: int) -> Iterator[Step]:
        """Endless timeline from ``t0_ms``.

        The first step, at ``t0_ms``, sets the current state and every tag. Later steps carry
        only the tags whose value changed; a change of state is a step even when no tag
        changes (e.g. two program segments with the same state). An MQTT device also has an
        empty step (a heartbeat: it republishes its document) wherever it would otherwise be
        silent for longer than ``behaviour.publish_every_s``.
        """
        steps = self._changes_from(t0_ms)
        if self.machine.protocol != "mqtt":
            yield from steps
            return
        every = max(1, round(self.machine.behaviour.publish_every_s * 1000))
        last: int | None = None
        for step in steps:
            if last is not None:
                t = last + every
                while t < step.ts_ms:
                    yield Step(t, None, ())
                    t += every
            yield step
            last = step.ts_ms

    def _changes_from(self, t0_ms: int) -> Iterator[Step]:
        renderer = self.profile.renderer(random.Random(self.activity.stream("noise")))
        rank = {t.name: i for i, t in enumerate(self.profile.tags)}
        last: dict[str, TagValue] = {}
        missing = object()

        def changed(values: dict[str, TagValue]) -> tuple[TagWrite, ...]:
            out = []
            for tag, value in values.items():
                old = last.get(tag, missing)
                if old != value or type(old) is not type(value):
                    out.append(TagWrite(tag, value))
                    last[tag] = value
            out.sort(key=lambda w: rank[w.tag])
            return tuple(out)

        moments = self.activity.moments(t0_ms)
        moment = next(moments)
        assert moment.state is not None
        snap = Snapshot(t0_ms, moment.state.mode, moment.state.execution, moment.state.cause)
        cycle_end: int | None = None
        while True:
            snap.ts_ms = moment.ts_ms
            if moment.state is not None:
                s = moment.state
                snap.mode, snap.execution, snap.cause = s.mode, s.execution, s.cause
            if moment.made is not None:
                snap.good += moment.made.good
                snap.scrap += moment.made.scrap
                if cycle_end is not None:
                    snap.cycle_ms = moment.ts_ms - cycle_end
                cycle_end = moment.ts_ms
            if moment.cleared:
                snap.alarm = None
            if moment.alarm is not None:
                snap.alarm = moment.alarm
            yield Step(moment.ts_ms, moment.state, changed(renderer.render(snap)), moment.made)
            following = next(moments)
            if self.profile.samples(snap.execution):
                t = moment.ts_ms + self.sample_ms
                while t < following.ts_ms:
                    snap.ts_ms = t
                    writes = changed(renderer.render(snap))
                    if writes:
                        yield Step(t, None, writes)
                    t += self.sample_ms
            moment = following

    def timeline(self, t0: float, seconds: float) -> list[Step]:
        """The steps from ``t0`` up to and including ``t0 + seconds``."""
        end = to_ms(t0) + to_ms(seconds)
        out: list[Step] = []
        for step in self.steps(t0):
            if step.ts_ms > end:
                return out
            out.append(step)
        raise AssertionError("unreachable: the timeline is endless")
