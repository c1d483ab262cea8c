"""Truth-based figures: the demo plant over one accelerated shift, and the interval arithmetic
checked on hand-made records."""

from __future__ import annotations

import pytest

from plantwire_bus.state import Execution, Mode
from plantwire_sim.clock import parse_start
from plantwire_sim.scenario import load_scenario
from plantwire_sim.scorecard import durations, intervals, nc_rates, parts, simulate
from plantwire_sim.truth import PartRecord, Record, StateRecord, TruthRecorder

X, ID, P = Execution.EXECUTING, Execution.IDLE, Execution.PAUSED
SHIFT_START = parse_start("2025-03-03T08:00:00+08:00")
SHIFT = 8 * 3600


def test_demo_shift_declared_and_truth_based_rates_differ_by_the_dishonest_machine() -> None:
    scenario = load_scenario("demo")
    # every value is generated; only states, parts and faults are kept for the figures
    truth = simulate(scenario, SHIFT_START, SHIFT, truth=TruthRecorder(values=False))
    end = SHIFT_START + SHIFT * 1000
    rates = nc_rates(scenario, truth.records(), SHIFT_START, end)["HXP"]
    assert (rates.key_processes, rates.declared, rates.verified) == (8, 5, 4)
    assert rates.declared_rate == 0.625 and rates.verified_rate == 0.5
    verdicts = {p.process: p for p in rates.processes}
    caught = [p for p in rates.processes if p.declared_nc and not p.verified_nc]
    assert [(p.process, p.equipment) for p in caught] == [("OP40", ("CNC-04",))]
    assert verdicts["OP40"].auto_share == pytest.approx(3 / 15, abs=0.01)
    assert verdicts["OP20"].auto_share == pytest.approx(18 / 19, abs=0.01)
    assert verdicts["OP30"].auto_share == pytest.approx(9 / 9.5, abs=0.01)
    assert not verdicts["OP60"].observed and not verdicts["OP60"].verified_nc
    # the shift really happened: states, parts of every simulated machine, interruptions
    made = parts(truth.records(), SHIFT_START, end)
    simulated = {m.code for _, _, m in scenario.machines() if m.protocol != "none"}
    assert set(made) == simulated
    assert made["CNC-01"][0] > 2000 and made["CNC-01"][1] > 0  # good and scrap parts
    causes = {s.cause for s in truth.states()}
    assert {"program", "micro_stop", "feed_hold", "alarm"} <= causes


def test_intervals_durations_and_parts_on_hand_made_records() -> None:
    records: list[Record] = [
        StateRecord("A", 0, Mode.AUTO, X),
        StateRecord("A", 6_000, Mode.AUTO, P, "micro_stop"),
        StateRecord("A", 7_000, Mode.AUTO, X),
        PartRecord("A", 9_000),
        StateRecord("A", 9_000, Mode.MANUAL, ID),
        StateRecord("B", 1_000, Mode.MANUAL, X),
        PartRecord("B", 5_000, scrap=True),
        PartRecord("B", 11_000),
    ]
    spans = intervals(records, 10_000)
    assert [(i.start_ms, i.end_ms, i.cause) for i in spans["A"]] == [
        (0, 6_000, "program"),
        (6_000, 7_000, "micro_stop"),
        (7_000, 9_000, "program"),
        (9_000, 10_000, "program"),
    ]
    assert durations(spans["A"], 2_000, 10_000) == {
        (Mode.AUTO, X): 6_000,
        (Mode.AUTO, P): 1_000,
        (Mode.MANUAL, ID): 1_000,
    }
    assert durations(spans["B"], 0, 10_000) == {(Mode.MANUAL, X): 9_000}
    assert parts(records, 0, 10_000) == {"A": (1, 0), "B": (0, 1)}
