"""Behaviour events and shift calendars laid over a machine's program (canonical activity)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from plantwire_bus.state import ControlType, Execution, Mode
from plantwire_sim.activity import Activity, Moment
from plantwire_sim.native import Alarm
from plantwire_sim.params import Behaviour
from plantwire_sim.scenario import Machine, Segment
from plantwire_sim.shifts import ShiftCalendar, parse_spans

X, P, ID, F, OFF = (
    Execution.EXECUTING,
    Execution.PAUSED,
    Execution.IDLE,
    Execution.FAULT,
    Execution.OFF,
)
T0 = 1_741_000_000_000
HOURS_8 = 8 * 3_600_000
ALARMS = (Alarm(1, 500, "one"), Alarm(2, 700, "two"))
PROGRAM = ((Mode.AUTO, X, 60.0), (Mode.MANUAL, X, 15.0), (Mode.AUTO, ID, 25.0))


def machine(
    behaviour: dict[str, Any], *program: tuple[Mode, Execution, float], code: str = "M-1"
) -> Machine:
    return Machine(
        code=code,
        name=code,
        line="L1",
        control_type=ControlType.CNC,
        declared_nc=True,
        program=tuple(Segment(mode=m, execution=e, seconds=s) for m, e, s in program or PROGRAM),
        behaviour=Behaviour(**behaviour),
    )


def until(moments: Iterator[Moment], end_ms: int) -> list[Moment]:
    return list(itertools.takewhile(lambda m: m.ts_ms <= end_ms, moments))


def time_in(moments: list[Moment], end_ms: int) -> Counter[tuple[Mode, Execution, str]]:
    out: Counter[tuple[Mode, Execution, str]] = Counter()
    for a, b in itertools.pairwise([*moments, Moment(end_ms, None)]):
        assert a.state is not None
        out[(a.state.mode, a.state.execution, a.state.cause)] += b.ts_ms - a.ts_ms
    return out


def auto_share(time: Counter[tuple[Mode, Execution, str]]) -> float:
    executing = sum(v for (_, x, _), v in time.items() if x is X)
    return sum(v for (m, x, _), v in time.items() if x is X and m is Mode.AUTO) / executing


def test_without_events_the_moments_are_the_program() -> None:
    a = Activity(machine({}), seed=3)
    moments = until(a.moments(T0), T0 + 1_000_000)
    assert all(m.state is not None and m.state.cause == "program" for m in moments)
    index, into = a.locate(a.phase_ms)
    assert moments[0].state is not None and moments[0].state.index == index
    for prev, nxt in itertools.pairwise(moments):
        assert prev.state is not None and nxt.state is not None
        assert nxt.state.index == (prev.state.index + 1) % 3
        expected = a.durations_ms[prev.state.index] - (into if prev is moments[0] else 0)
        assert nxt.ts_ms - prev.ts_ms == expected
        assert (nxt.made is not None) == (prev.state.execution is X)


def test_pauses_and_alarms_keep_the_programs_auto_share() -> None:
    behaviour = {
        "micro_stop_every_s": 300,
        "micro_stop_s": 10,
        "feed_hold_every_s": 1200,
        "feed_hold_s": 60,
        "alarm_every_s": 3600,
        "repair_s": 600,
    }
    a = Activity(machine(behaviour), seed=11, alarms=ALARMS)
    moments = until(a.moments(T0), T0 + HOURS_8)
    time = time_in(moments, T0 + HOURS_8)
    assert auto_share(time) == pytest.approx(60 / 75, abs=0.01)
    causes = Counter(m.state.cause for m in moments if m.state is not None)
    program_executing_s = 8 * 3600 * 75 / 100
    assert 0.5 * program_executing_s / 300 < causes["micro_stop"] < 2 * program_executing_s / 300
    assert causes["feed_hold"] > 0 and causes["alarm"] > 0
    for (_, execution, cause), ms in time.items():
        if cause in ("micro_stop", "feed_hold"):
            assert execution is P and ms > 0
        if cause == "alarm":
            assert execution is F
    raised = [m for m in moments if m.alarm is not None]
    assert len(raised) == causes["alarm"] and {m.alarm for m in raised} <= set(ALARMS)
    assert all(m.state is not None and m.state.cause == "alarm" for m in raised)
    cleared = [m for m in moments if m.cleared]
    assert [m.ts_ms for m in cleared] == [
        m.ts_ms
        for m in moments
        if m.state is not None
        and m.state.cause == "program"
        and any(r.ts_ms < m.ts_ms for r in raised)
        and moments[moments.index(m) - 1].alarm is not None
    ]


def test_parts_only_end_program_segments_and_scrap_follows_its_rate() -> None:
    a = Activity(machine({"scrap_rate": 0.2, "mdi_every_s": 600, "mdi_s": 30}), seed=5)
    moments = until(a.moments(T0), T0 + HOURS_8)
    made = [m for m in moments if m.made is not None]
    assert all(m.made is not None and sum(m.made) == 1 for m in made)  # one part a cycle
    cycles_s = 100
    assert abs(len(made) - 2 * 8 * 3600 / cycles_s) <= 2 * 8 * 3600 * 0.1 / cycles_s
    scrap = sum(m.made is not None and m.made.scrap for m in made) / len(made)
    assert 0.15 < scrap < 0.25
    for m in made:
        previous = moments[moments.index(m) - 1]
        assert previous.state is not None and previous.state.execution is X
        assert previous.state.cause == "program"


def test_mdi_and_manual_interventions_dilute_the_auto_share() -> None:
    plain = time_in(until(Activity(machine({}), 9).moments(T0), T0 + HOURS_8), T0 + HOURS_8)
    busy = Activity(
        machine({"mdi_every_s": 300, "mdi_s": 60, "manual_every_s": 900, "manual_s": 120}), 9
    )
    time = time_in(until(busy.moments(T0), T0 + HOURS_8), T0 + HOURS_8)
    assert time[(Mode.MDI, X, "mdi")] > 0 and time[(Mode.MANUAL, X, "manual")] > 0
    assert auto_share(time) < auto_share(plain) - 0.1


def test_same_seed_same_moments_other_seed_other_moments() -> None:
    behaviour = {"micro_stop_every_s": 120, "alarm_every_s": 900, "scrap_rate": 0.1}
    first = until(Activity(machine(behaviour), 4, ALARMS).moments(T0), T0 + 3_600_000)
    again = until(Activity(machine(behaviour), 4, ALARMS).moments(T0), T0 + 3_600_000)
    other = until(Activity(machine(behaviour), 5, ALARMS).moments(T0), T0 + 3_600_000)
    assert first == again
    assert first != other


def local_ms(text: str) -> int:
    return round(
        datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000
    )


def test_shift_calendar_switches_off_sets_up_and_breaks() -> None:
    calendar = ShiftCalendar(
        "Asia/Shanghai",
        parse_spans("08:00-17:00"),
        frozenset(range(5)),
        parse_spans("12:00-13:00"),
        20,
    )
    start, end = local_ms("2025-03-03T06:00"), local_ms("2025-03-04T06:00")  # a Monday
    a = Activity(machine({}), 2, calendar=calendar)
    moments = until(a.moments(start), end)
    time = time_in(moments, end)
    assert time[(Mode.UNKNOWN, OFF, "off_shift")] == 2 * 3_600_000 + 13 * 3_600_000
    assert time[(Mode.SETUP, ID, "setup")] == 20 * 60_000
    assert sum(v for (_, x, c), v in time.items() if c == "break") == 3_600_000
    working = 9 * 3_600_000 - 20 * 60_000 - 3_600_000
    assert sum(v for (_, _, c), v in time.items() if c == "program") == working
    # the program waits while the site is off: it resumes exactly where it stopped
    executing = sum(v for (_, x, c), v in time.items() if x is X and c == "program")
    assert auto_share(time) == pytest.approx(60 / 75, abs=0.02)
    assert executing == pytest.approx(working * 0.75, rel=0.02)
    off_starts = [m for m in moments if m.state is not None and m.state.cause == "off_shift"]
    assert [m.ts_ms for m in off_starts] == [start, local_ms("2025-03-03T17:00")]


def test_several_parts_a_cycle_with_fixed_good_and_scrap_counts() -> None:
    """4 parts at the end of each EXECUTING segment, 1 of them scrap, whatever the seed."""
    a = Activity(machine({"parts_per_cycle": 4, "scrap_per_cycle": 1}), seed=5)
    moments = until(a.moments(T0), T0 + HOURS_8)
    made = [m.made for m in moments if m.made is not None]
    assert made and set(made) == {(3, 1)}
    # two EXECUTING segments a 100 s cycle: 2 x 288 cycle ends in 8 h (give or take the phase)
    assert abs(len(made) - 2 * 8 * 36) <= 2
    drawn = Activity(machine({"parts_per_cycle": 4, "scrap_rate": 0.25}), seed=5)
    parts = [m.made for m in until(drawn.moments(T0), T0 + HOURS_8) if m.made is not None]
    assert all(sum(p) == 4 for p in parts)
    assert 0.2 < sum(p.scrap for p in parts) / (4 * len(parts)) < 0.3


def test_planned_maintenance_stands_the_machine_still_and_wins_over_shifts() -> None:
    """Shifts 08:00-17:00, maintenance 10:00-11:30 local and 16:30-18:00 across the shift's
    end: the machine is in SERVICE (idle) 1.5 h each time, off only once the second window
    ends at 18:00, and its program runs the 7 h of its shift outside maintenance."""
    windows = (("2025-03-03T10:00", "2025-03-03T11:30"), ("2025-03-03T16:30", "2025-03-03T18:00"))
    calendar = ShiftCalendar(
        "Asia/Shanghai",
        parse_spans("08:00-17:00"),
        frozenset(range(5)),
        maintenance=tuple((local_ms(a), local_ms(b)) for a, b in windows),
    )
    start, end = local_ms("2025-03-03T06:00"), local_ms("2025-03-04T06:00")
    moments = until(Activity(machine({}), 2, calendar=calendar).moments(start), end)
    time = time_in(moments, end)
    assert time[(Mode.SERVICE, ID, "maintenance")] == 3.0 * 3_600_000
    assert sum(v for (_, _, c), v in time.items() if c == "program") == 7 * 3_600_000
    changes = [(m.ts_ms, m.state.cause) for m in moments if m.state is not None]
    assert (local_ms("2025-03-03T10:00"), "maintenance") in changes
    assert (local_ms("2025-03-03T11:30"), "program") in changes
    assert (local_ms("2025-03-03T18:00"), "off_shift") in changes
    assert calendar.situation(local_ms("2025-03-03T09:00")) == (
        "work",
        local_ms("2025-03-03T10:00"),
    )
