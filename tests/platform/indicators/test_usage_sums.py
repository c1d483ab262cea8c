"""The roll-up's sums over a shift plan (real database, both backends): an enterprise's usage
over six days of three shifts with gaps, with every closed hour taken from the hourly roll-up,
equals the same state samples integrated directly over the planned time (formulas'
usage_in_window, no roll-up), to the second."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plantwire_platform.indicators.enterprise import enterprise_indicators
from plantwire_platform.indicators.formulas import StatePoint, Thresholds, usage_in_window
from plantwire_platform.indicators.shift_calendar import ShiftCalendar, parse_shifts
from plantwire_platform.indicators.usage import keep_current
from tests.platform.indicators.demo_machine import demo_machine

SHIFTS = "06:00-10:30,12:00-14:00,22:00-02:00"  # gaps, a half hour, one across midnight
WORKDAYS = (0, 1, 2, 4, 5)  # Thursday and Sunday off


@pytest.mark.parametrize("seed", [1, 2])
async def test_rollup_sums_over_a_shift_plan_equal_the_samples(
    database_url: str, seed: int
) -> None:
    rng = random.Random(seed)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    start = end - timedelta(days=6, minutes=17)  # not on an hour: exact parts at both ends
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        m = await demo_machine(conn, SHIFTS, WORKDAYS)
        ent, tz, eid, mode, execution = m.enterprise, m.timezone, m.equipment, m.mode, m.execution
        online = start - timedelta(hours=3)
        offline = start + timedelta(days=2, minutes=41)  # an outage of five hours
        back = offline + timedelta(hours=5)
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at, offline_at) VALUES ('HXP', 'GW', 'CNC-01', %s, %s, %s),"
            " ('HXP', 'GW', 'CNC-01', %s, %s, NULL)",
            (eid, online, offline, eid, back),
        )
        points, t = [], online
        while t < end + timedelta(hours=1):
            series, kind, value = rng.choice(
                [
                    (mode, "mode", rng.choice(["AUTO", "MANUAL", "MDI"])),
                    (execution, "execution", rng.choice(["EXECUTING", "IDLE", "STOPPED"])),
                ]
            )
            points.append(StatePoint(t, kind, value))
            await conn.execute("INSERT INTO sample_text VALUES (%s, %s, %s)", (series, t, value))
            t += timedelta(seconds=rng.randint(60, 5400))

        assert await keep_current(conn, end + timedelta(hours=1)) > 0
        result = await enterprise_indicators(conn, ent, start, end, Thresholds())

    got = next(r.usage for r in result.equipment if r.id == eid)
    planned = ShiftCalendar(tz, parse_shifts(SHIFTS), frozenset(WORKDAYS)).planned(start, end)
    want = usage_in_window(start, end, [(online, offline), (back, None)], points, planned)
    assert len(planned) > 8  # the plan has many runs in the window
    for field in ("observed_s", "executing_s", "auto_executing_s", "mdi_executing_s"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), abs=1e-6), field
    assert got.planned_s == pytest.approx(want.planned_s)
    assert want.executing_s > 3600  # something to compare
