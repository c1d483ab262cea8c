"""Behaviour engine: deterministic timelines, native mappings, part counting, durations, for
every profile (CNC, injection moulding, legacy Modbus machine, MQTT station and energy box)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from plantwire_bus.state import ControlType, Execution, Mode
from plantwire_sim.behaviour import (
    MACHINE_OPERATION_MODE,
    PART_COUNT,
    PROGRAM_STATUS,
    SPINDLE_SPEED,
    TAGS,
    MachineBehaviour,
    Step,
    machine_operation_mode,
    profile_of,
    program_status,
    segment_ms,
    to_ms,
)
from plantwire_sim.params import Behaviour
from plantwire_sim.scenario import Machine, Segment, load_scenario
from plantwire_sim.scorecard import parts as parts_made
from plantwire_sim.truth import TruthRecorder

T0 = 1_700_000_000.0  # epoch seconds, a whole millisecond
X, P, ID = Execution.EXECUTING, Execution.PAUSED, Execution.IDLE


def machine(code: str, *program: tuple[Mode, Execution, float], rpm: float = 1000.0) -> Machine:
    return Machine(
        code=code,
        name=code,
        line="L1",
        control_type=ControlType.CNC,
        declared_nc=True,
        spindle_rpm=rpm,
        program=tuple(Segment(mode=m, execution=e, seconds=s) for m, e, s in program),
    )


def program_only(m: Machine) -> Machine:
    """The machine without behaviour events: its timeline is its program alone."""
    return m.model_copy(update={"behaviour": Behaviour(sample_s=m.behaviour.sample_s)})


DEMO = [program_only(m) for _, _, m in load_scenario("demo").machines() if m.program]
CNC_DEMO = [m for m in DEMO if m.profile == "cnc"]
# the part counter of each profile (counts every completed part, good or scrap)
COUNTER = {
    "cnc": PART_COUNT,
    "injection": "ShotCounter",
    "legacy": "PartCounter",
    "station": "counts.good",
    "energy": None,
}
PROGRAMS = {
    "two-step": machine("M-1", (Mode.AUTO, X, 8), (Mode.AUTO, ID, 2)),
    "exec-exec": machine("M-2", (Mode.AUTO, X, 1.5), (Mode.MANUAL, X, 1), (Mode.AUTO, ID, 2)),
    "paused": machine("M-3", (Mode.AUTO, X, 2.25), (Mode.AUTO, P, 0.5), (Mode.SETUP, ID, 1)),
    "no-spindle": machine("M-4", (Mode.MANUAL, X, 3), (Mode.MANUAL, ID, 1), rpm=0.0),
    "same-state": machine("M-5", (Mode.AUTO, X, 1), (Mode.AUTO, X, 1), (Mode.AUTO, ID, 1)),
    "only-exec": machine("M-6", (Mode.AUTO, X, 2)),
}
CASES = list(PROGRAMS.values()) + DEMO
IDS = list(PROGRAMS) + [m.code for m in DEMO]


def segment_steps(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.segment is not None]


@pytest.mark.parametrize("m", CASES, ids=IDS)
def test_same_seed_same_timeline(m: Machine) -> None:
    a = MachineBehaviour(m, seed=7).timeline(T0, 120)
    b = MachineBehaviour(m, seed=7).timeline(T0, 120)
    assert a == b
    assert a[0].ts_ms == round(T0 * 1000)


def test_phase_depends_on_seed_and_machine_code() -> None:
    program = ((Mode.AUTO, X, 60.0), (Mode.AUTO, ID, 60.0))
    phases = {
        (seed, code): MachineBehaviour(machine(code, *program), seed).phase_ms
        for seed in (0, 7)
        for code in ("CNC-01", "CNC-02", "CNC-03")
    }
    assert len(set(phases.values())) == len(phases)  # 120 000 possible phases each
    assert all(0 <= p < 120_000 for p in phases.values())


def test_phase_is_stable_across_processes() -> None:
    """No salted hash(): another interpreter with another hash seed finds the same phases."""
    code = (
        "from plantwire_sim.behaviour import MachineBehaviour\n"
        "from plantwire_sim.scenario import load_scenario\n"
        "print([MachineBehaviour(m, 7).phase_ms for _, _, m in load_scenario('demo').machines()"
        " if m.program])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str([MachineBehaviour(m, 7).phase_ms for m in DEMO])


@pytest.mark.parametrize(
    ("mode", "native"),
    [
        (Mode.MANUAL, 0),
        (Mode.AUTO, 1),
        (Mode.SETUP, 2),
        (Mode.SEMI_AUTO, 3),
        (Mode.SERVICE, 4),
        (Mode.UNKNOWN, 5),
        (Mode.MDI, 0),  # no OPC 40501 value: reported as Manual
    ],
)
def test_machine_operation_mode(mode: Mode, native: int) -> None:
    assert machine_operation_mode(mode) == native


@pytest.mark.parametrize(
    ("execution", "native"),
    [
        (Execution.EXECUTING, 1),
        (Execution.PAUSED, 3),
        (Execution.IDLE, 0),
        (Execution.FAULT, 4),
        (Execution.OFF, 0),
        (Execution.NO_DATA, 0),
    ],
)
def test_program_status(execution: Execution, native: int) -> None:
    assert program_status(execution) == native


def test_mapping_tables_cover_every_canonical_value() -> None:
    assert {machine_operation_mode(m) for m in Mode} <= set(range(6))
    assert {program_status(e) for e in Execution} <= set(range(5))


@pytest.mark.parametrize("m", CASES, ids=IDS)
def test_first_step_sets_every_tag_and_the_current_segment(m: Machine) -> None:
    b = MachineBehaviour(m, seed=3)
    first = next(b.steps(T0))
    index, _ = b.locate(b.phase_ms)
    seg = m.program[index]
    assert first.segment is not None
    assert (first.segment.index, first.segment.mode, first.segment.execution) == (
        index,
        seg.mode,
        seg.execution,
    )
    values = first.values()
    assert [w.tag for w in first.writes] == [t.name for t in profile_of(m).tags]
    if m.profile != "cnc":
        return
    assert [w.tag for w in first.writes][:4] == list(TAGS)
    assert values[MACHINE_OPERATION_MODE] == machine_operation_mode(seg.mode)
    assert values[PROGRAM_STATUS] == program_status(seg.execution)
    assert values[PART_COUNT] == 0
    speed = values[SPINDLE_SPEED]
    assert isinstance(speed, float)
    assert (speed > 0) == (seg.execution is X and m.spindle_rpm > 0)


@pytest.mark.parametrize("m", CASES, ids=IDS)
def test_segment_durations_follow_the_program(m: Machine) -> None:
    b = MachineBehaviour(m, seed=11)
    starts = segment_steps(b.timeline(T0, 3 * b.cycle_ms / 1000))
    _, into = b.locate(b.phase_ms)
    for prev, nxt in itertools.pairwise(starts):
        assert prev.segment is not None and nxt.segment is not None
        assert nxt.segment.index == (prev.segment.index + 1) % len(m.program)
        expected = segment_ms(m.program[prev.segment.index])
        if prev is starts[0]:
            expected -= into  # the timeline starts part-way through a segment
        assert nxt.ts_ms - prev.ts_ms == expected


@pytest.mark.parametrize("m", CASES, ids=IDS)
def test_part_count_increments_exactly_at_ends_of_executing_segments(m: Machine) -> None:
    b = MachineBehaviour(m, seed=5)
    steps = b.timeline(T0, 4 * b.cycle_ms / 1000)
    counter = COUNTER[m.profile or "cnc"]
    count = 0
    current: Execution | None = None
    for step in steps:
        values = step.values()
        if step is steps[0]:
            assert counter is None or values[counter] == 0
            assert step.made is None
        elif step.segment is not None and current is X:
            count += 1
            assert step.made is not None and sum(step.made) == 1, step
            if counter is not None and step.made.good:
                assert values.get(counter) == sum(
                    s.made.good for s in steps[: steps.index(step) + 1] if s.made is not None
                ), step
        else:
            assert step.made is None, step
            assert counter is None or counter not in values, step
        if step.segment is not None:
            current = step.segment.execution
    executing_ends = sum(1 for s in m.program if s.execution is X) * 3
    assert count >= executing_ends  # at least three whole cycles were walked


@pytest.mark.parametrize("m", CASES, ids=IDS)
def test_values_are_written_only_when_they_change(m: Machine) -> None:
    last: dict[str, object] = {}
    every = round(m.behaviour.publish_every_s * 1000)
    previous: int | None = None
    for step in MachineBehaviour(m, seed=9).timeline(T0, 90):
        if not step.writes and step.segment is None:  # an MQTT device's heartbeat, on time
            assert m.protocol == "mqtt" and previous is not None, step
            assert step.ts_ms == previous + every, step
        if previous is not None and m.protocol == "mqtt":
            assert step.ts_ms - previous <= every, step  # never silent for longer
        previous = step.ts_ms
        for tag, value in step.writes:
            assert last.get(tag) != value, (step, tag)
            last[tag] = value


@pytest.mark.parametrize(
    "m", list(PROGRAMS.values()) + CNC_DEMO, ids=list(PROGRAMS) + [m.code for m in CNC_DEMO]
)
def test_spindle_speed_noise_and_redraws(m: Machine) -> None:
    steps = MachineBehaviour(m, seed=13).timeline(T0, 60)
    seg_start, executing = steps[0].ts_ms, False
    for step in steps:
        if step.segment is not None:
            seg_start, executing = step.ts_ms, step.segment.execution is X
        speed = step.values().get(SPINDLE_SPEED)
        if step.segment is None:  # a redraw: 1 s grid from the segment start, while executing
            assert executing and (step.ts_ms - seg_start) % 1000 == 0
        if speed is None:
            continue
        assert isinstance(speed, float)
        if executing and m.spindle_rpm > 0:
            assert 0.98 * m.spindle_rpm - 0.05 <= speed <= 1.02 * m.spindle_rpm + 0.05
        else:
            assert speed == 0.0
        assert isinstance(speed, float)


def test_timestamps_are_whole_milliseconds() -> None:
    steps = MachineBehaviour(PROGRAMS["paused"], seed=1).timeline(T0 + 0.0004567, 30)
    assert steps[0].ts_ms == round((T0 + 0.0004567) * 1000)
    assert all(type(s.ts_ms) is int for s in steps)
    assert [s.ts_ms for s in steps] == sorted({s.ts_ms for s in steps})  # one step per instant


@pytest.mark.parametrize("m", DEMO, ids=[m.code for m in DEMO])
def test_native_value_types(m: Machine) -> None:
    kinds = {t.name: t.kind for t in profile_of(m).tags}
    for step in MachineBehaviour(m, seed=7).timeline(T0, 90):
        for tag, value in step.writes:
            assert type(value) is kinds[tag], (tag, value)


def test_counters_count_every_part_of_a_cycle() -> None:
    """A CNC making 5 parts a cycle, 2 of them scrap: PartCount goes up by 5 and ScrapCount
    by 2 at every end of its EXECUTING segment; the truth has a record of each kind."""
    m = machine("M-7", (Mode.AUTO, X, 8), (Mode.AUTO, ID, 2)).model_copy(
        update={"behaviour": Behaviour(parts_per_cycle=5, scrap_per_cycle=2, phase_s=0)}
    )
    steps = MachineBehaviour(m, seed=1).timeline(T0, 35)  # ends at 8, 18, 28 s
    made = [(s.ts_ms - to_ms(T0), s.made, s.values()) for s in steps if s.made is not None]
    assert [t for t, _, _ in made] == [8000, 18000, 28000]
    for i, (_, parts, values) in enumerate(made, 1):
        assert parts == (3, 2)
        assert (values[PART_COUNT], values["ScrapCount"]) == (5 * i, 2 * i)
    truth = TruthRecorder()
    truth.record_made("M-7", 8000, 3, 2)
    assert [(r.scrap, r.count) for r in truth.parts()] == [(False, 3), (True, 2)]
    assert parts_made(truth.records(), 0, 9000) == {"M-7": (3, 2)}
