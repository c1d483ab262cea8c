"""Hand-computed fixtures for the indicator formulas (pure, no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from plantwire_platform.indicators.formulas import (
    EquipmentRef,
    ProcessRef,
    StatePoint,
    Thresholds,
    Usage,
    nc_rates,
    usage_in_window,
)

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def points(*changes: tuple[float, str, str]) -> list[StatePoint]:
    return [StatePoint(at(s), kind, value) for s, kind, value in changes]


@pytest.mark.parametrize(
    ("sessions", "changes", "expected"),
    [
        # online the whole 100 s window; AUTO+EXECUTING 0-60, IDLE 60-100
        (
            [(at(0), None)],
            [(0, "mode", "AUTO"), (0, "execution", "EXECUTING"), (60, "execution", "IDLE")],
            Usage(100, 60, 60, 0),
        ),
        # state set before the window starts still holds inside it
        (
            [(at(-50), None)],
            [(-30, "mode", "MANUAL"), (-30, "execution", "EXECUTING"), (40, "mode", "AUTO")],
            Usage(100, 100, 60, 0),
        ),
        # offline 30-50: that time is neither observed nor executing
        (
            [(at(0), at(30)), (at(50), None)],
            [(0, "mode", "AUTO"), (0, "execution", "EXECUTING")],
            Usage(80, 80, 80, 0),
        ),
        # MDI is executing but not automatic; it is counted apart
        (
            [(at(0), None)],
            [(0, "mode", "MDI"), (0, "execution", "EXECUTING"), (25, "mode", "AUTO")],
            Usage(100, 100, 75, 25),
        ),
        # never online: nothing observed, whatever the samples say
        ([], [(0, "mode", "AUTO"), (0, "execution", "EXECUTING")], Usage(0, 0, 0, 0)),
        # changes after the window end are ignored
        (
            [(at(0), None)],
            [(0, "mode", "AUTO"), (0, "execution", "IDLE"), (150, "execution", "EXECUTING")],
            Usage(100, 0, 0, 0),
        ),
    ],
)
def test_usage_in_window(
    sessions: list[tuple[datetime, datetime | None]],
    changes: list[tuple[float, str, str]],
    expected: Usage,
) -> None:
    got = usage_in_window(at(0), at(100), sessions, points(*changes))
    assert got == replace(expected, planned_s=100.0)


def test_usage_counts_only_planned_time() -> None:
    # planned 0-30 and 60-100; online 20-80; AUTO+EXECUTING from 10, IDLE from 70
    changes = points(
        (10, "mode", "AUTO"), (10, "execution", "EXECUTING"), (70, "execution", "IDLE")
    )
    planned = [(at(0), at(30)), (at(60), at(100))]
    got = usage_in_window(at(0), at(100), [(at(20), at(80))], changes, planned)
    # observed = 20-30 and 60-80 = 30 s; executing = 20-30 and 60-70 = 20 s
    assert got == Usage(30, 20, 20, 0, 70)


def proc(pid: int, *equipment: tuple[int, bool]) -> ProcessRef:
    return ProcessRef(
        pid,
        f"OP{pid}",
        f"process {pid}",
        tuple(EquipmentRef(e, f"M{e}", nc) for e, nc in equipment),
    )


WINDOW = 1000.0


@pytest.mark.parametrize(
    ("processes", "usage", "declared", "covered", "verified"),
    [
        # honest NC machine, fully observed, 95 % automatic -> counts everywhere
        ([proc(1, (1, True))], {1: Usage(1000, 800, 760, 0)}, 1, 1, 1),
        # declared NC but run by hand (20 % AUTO): declared yes, verified no
        ([proc(1, (1, True))], {1: Usage(1000, 800, 160, 0)}, 1, 1, 0),
        # exactly at the 80 % threshold counts
        ([proc(1, (1, True))], {1: Usage(1000, 500, 400, 0)}, 1, 1, 1),
        # observed 85 % < 90 %: not covered, so not verified even if automatic
        ([proc(1, (1, True))], {1: Usage(850, 800, 800, 0)}, 1, 0, 0),
        # a key process with no equipment: in the denominator, counts nowhere
        ([proc(1)], {}, 0, 0, 0),
        # equipment offline all window (no telemetry)
        ([proc(1, (1, True))], {}, 1, 0, 0),
        # MDI-only running: executing but never AUTO
        ([proc(1, (1, True))], {1: Usage(1000, 900, 0, 900)}, 1, 1, 0),
        # covered but never executing: no evidence of automatic running
        ([proc(1, (1, True))], {1: Usage(1000, 0, 0, 0)}, 1, 1, 0),
        # two machines on one process: all must be declared NC, AUTO share pooled
        # (700 + 100) / (800 + 200) = 80 % -> counts; coverage = min(1000, 950) -> covered
        (
            [proc(1, (1, True), (2, True))],
            {1: Usage(1000, 800, 700, 0), 2: Usage(950, 200, 100, 0)},
            1,
            1,
            1,
        ),
        (
            [proc(1, (1, True), (2, False))],
            {1: Usage(1000, 800, 800, 0), 2: Usage(1000, 200, 200, 0)},
            0,
            1,
            1,
        ),
        # a manual process run manually: neither declared nor verified
        ([proc(1, (1, False))], {1: Usage(1000, 600, 0, 0)}, 0, 1, 0),
    ],
)
def test_nc_rates(
    processes: list[ProcessRef],
    usage: dict[int, Usage],
    declared: int,
    covered: int,
    verified: int,
) -> None:
    rates = nc_rates(processes, usage, WINDOW)
    assert (rates.declared, rates.covered, rates.verified) == (declared, covered, verified)
    assert rates.key_processes == len(processes)


def test_thresholds_are_parameters() -> None:
    usage = {1: Usage(1000, 800, 560, 0)}  # 70 % AUTO
    assert nc_rates([proc(1, (1, True))], usage, WINDOW).verified == 0
    assert nc_rates([proc(1, (1, True))], usage, WINDOW, Thresholds(0.9, 0.7)).verified == 1


def test_verdict_explains_why() -> None:
    rates = nc_rates([proc(1, (1, True))], {1: Usage(970, 800, 336, 0)}, WINDOW)
    assert rates.verdicts[0].reason == "covered 97%, AUTO 42% of EXECUTING time < 80%"


@pytest.mark.parametrize(
    ("sessions", "expected"),
    [
        ([], 0),  # nothing ever online: the full window
        ([(at(40), None)], 40),  # connected 60 s ago: judged since then
        ([(at(40), None), (at(45), at(70)), (at(90), None)], 40),  # overlaps merge
        ([(at(10), at(30)), (at(50), None)], 50),  # a complete outage 30-50 restarts the period
        ([(at(10), at(30)), (at(30), None)], 10),  # touching sessions are one period
        ([(at(-500), None)], 0),  # online for longer than the window: the full window
        ([(at(10), at(90))], 0),  # nothing online now: the full window
    ],
)
def test_current_period_start(
    sessions: list[tuple[datetime, datetime | None]], expected: float
) -> None:
    from plantwire_platform.indicators.enterprise import current_period_start

    assert current_period_start(sessions, at(0), at(100)) == at(expected)


def test_time_weighted_and_mdi_share() -> None:
    processes = [proc(1, (1, True)), proc(2, (2, True)), proc(3, (3, True))]
    usage = {
        1: Usage(1000, 800, 720, 0),  # 90 % AUTO
        2: Usage(1000, 500, 100, 250),  # 20 % AUTO, 50 % MDI
        3: Usage(500, 800, 800, 0),  # not covered: no credit
    }
    rates = nc_rates(processes, usage, WINDOW)
    assert rates.time_weighted == pytest.approx(0.9 + 0.2)
    assert rates.mdi_share == pytest.approx(250 / 1300)
    assert rates.verified == 1


@pytest.mark.parametrize(
    ("args", "a", "p", "q", "total"),
    [
        # 8 h planned, 6 h running, 60 s ideal cycle, 300 parts, 15 scrap
        ((28800, 21600, 300, 15, 60), 0.75, 300 * 60 / 21600, 285 / 300, None),
        # faster than the ideal cycle: performance is capped at 1
        ((3600, 3600, 100, 0, 60), 1.0, 1.0, 1.0, 1.0),
        # no ideal cycle time registered: performance and OEE undefined
        ((3600, 1800, 10, 1, None), 0.5, None, 0.9, None),
        # nothing produced: quality undefined
        ((3600, 0, 0, 0, 60), 0.0, None, None, None),
    ],
)
def test_oee(
    args: tuple[float, float, float, float, float | None],
    a: float | None,
    p: float | None,
    q: float | None,
    total: float | None,
) -> None:
    from plantwire_platform.indicators.formulas import oee

    result = oee(*args)
    assert (result.availability, result.performance, result.quality) == (
        pytest.approx(a) if a is not None else None,
        pytest.approx(p) if p is not None else None,
        pytest.approx(q) if q is not None else None,
    )
    if a is not None and p is not None and q is not None:
        assert result.oee == pytest.approx(a * p * q)
    if total is not None:
        assert result.oee == pytest.approx(total)


@pytest.mark.parametrize(
    ("values", "increase"),
    [([], 0), ([5], 0), ([5, 6, 9], 4), ([100, 102, 3, 5], 2 + 3 + 2), ([7, 7, 7], 0)],
)
def test_counter_increase(values: list[float], increase: float) -> None:
    from plantwire_platform.indicators.formulas import counter_increase

    assert counter_increase(values) == increase


def test_usage_by_hour_agrees_with_usage_in_window() -> None:
    """Two independent integrations of the same random timelines must agree hour by hour."""
    import random

    from plantwire_platform.indicators.formulas import usage_by_hour

    rng = random.Random(5)
    start = datetime(2026, 11, 2, 0, tzinfo=UTC)
    for _ in range(20):
        changes: list[StatePoint] = []
        t = start - timedelta(minutes=rng.randint(0, 90))
        while t < start + timedelta(hours=6):
            kind = rng.choice(["mode", "execution"])
            value = rng.choice(
                ["AUTO", "MANUAL", "MDI"] if kind == "mode" else ["EXECUTING", "IDLE", "PAUSED"]
            )
            changes.append(StatePoint(t, kind, value))
            t += timedelta(seconds=rng.randint(1, 1800))
        sessions: list[tuple[datetime, datetime | None]] = []
        t = start - timedelta(hours=1)
        while t < start + timedelta(hours=6):
            up = t + timedelta(minutes=rng.randint(5, 200))
            sessions.append((t, up))
            t = up + timedelta(minutes=rng.randint(0, 40))
        hours = usage_by_hour(start, start + timedelta(hours=5), sessions, changes)
        assert len(hours) == 5
        for hour, got in hours.items():
            want = usage_in_window(hour, hour + timedelta(hours=1), sessions, changes)
            assert got.observed_s == pytest.approx(want.observed_s)
            assert got.executing_s == pytest.approx(want.executing_s)
            assert got.auto_executing_s == pytest.approx(want.auto_executing_s)
            assert got.mdi_executing_s == pytest.approx(want.mdi_executing_s)
