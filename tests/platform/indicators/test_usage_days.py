"""The daily roll-up (real database, both backends): a machine's usage over five days of a
shift plan with gaps, read through the day rows the keeper stores, equals the state samples
integrated directly over the planned time (formulas' usage_in_window, no roll-up); so it does
with the day rows gone (read from the hours), and after a late sample, which drops the rows of
its day and every later one with the hours, until the keeper has stored them again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from plantwire_platform.indicators.enterprise import enterprise_indicators
from plantwire_platform.indicators.formulas import StatePoint, Thresholds, Usage, usage_in_window
from plantwire_platform.indicators.shift_calendar import ShiftCalendar, parse_shifts
from plantwire_platform.indicators.usage import day_runs, keep_current
from tests.platform.indicators.demo_machine import demo_machine, rows

SHIFTS = "06:00-10:30,12:00-14:00,22:00-02:00"  # gaps, a half hour, one across midnight
H = timedelta(hours=1)
FIELDS = ("observed_s", "executing_s", "auto_executing_s", "mdi_executing_s")


def test_day_runs_cut_hours_at_utc_midnight() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    hours = [day - 2 * H, day - H, day, day + H, day + 5 * H, day + 23 * H, day + 24 * H]
    assert day_runs(hours) == (
        [(day - 24 * H, 22, 24), (day, 0, 2), (day, 5, 6), (day, 23, 24), (day + 24 * H, 0, 1)],
        [],
    )
    # hours of a zone half an hour off UTC are read one by one
    half = [day + 30 * timedelta(minutes=1), day + 90 * timedelta(minutes=1)]
    assert day_runs(half) == ([], half)


async def test_usage_through_day_rows_equals_the_samples(database_url: str) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=5, minutes=23)  # four whole UTC days at least, exact ends
    end = now - 2 * H
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        m = await demo_machine(conn, SHIFTS)
        ent, tz, eid, mode, execution = m.enterprise, m.timezone, m.equipment, m.mode, m.execution
        online = start - 3 * H
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) VALUES ('HXP', 'GW', 'CNC-01', %s, %s)",
            (eid, online),
        )
        points, t = [], online
        series = {"mode": mode, "execution": execution}
        while t < now:
            kind, value = rng.choice(
                [
                    ("mode", rng.choice(["AUTO", "MANUAL", "MDI"])),
                    ("execution", rng.choice(["EXECUTING", "IDLE", "STOPPED"])),
                ]
            )
            points.append(StatePoint(t, kind, value))
            await conn.execute(
                "INSERT INTO sample_text VALUES (%s, %s, %s)", (series[kind], t, value)
            )
            t += timedelta(seconds=rng.randint(60, 5400))
        planned = ShiftCalendar(tz, parse_shifts(SHIFTS), frozenset(range(7))).planned(start, end)

        async def usage() -> Usage:
            result = await enterprise_indicators(conn, ent, start, end, Thresholds())
            return next(r.usage for r in result.equipment if r.id == eid)

        def truth() -> Usage:
            ordered = sorted(points, key=lambda p: p.ts)
            return usage_in_window(start, end, [(online, None)], ordered, planned)

        def assert_equal(got: Usage, want: Usage) -> None:
            for field in FIELDS:
                assert getattr(got, field) == pytest.approx(getattr(want, field), abs=1e-6), field
            assert got.planned_s == pytest.approx(want.planned_s)
            assert want.executing_s > 3600  # something to compare

        assert await keep_current(conn, now) > 0
        days = [r[0] for r in await rows(conn, "SELECT day FROM usage_day ORDER BY day")]
        # hours are stored from the one online_at falls in: the first UTC day with all 24 is
        # that hour's if it is midnight's (a run between 04:00 and 05:00 UTC), else the next
        hour0 = online.replace(minute=0, second=0, microsecond=0)
        first = hour0 if hour0.hour == 0 else hour0.replace(hour=0) + 24 * H
        assert days == [first + i * 24 * H for i in range(len(days))]
        assert len(days) >= 4  # the window's whole days come from these rows
        assert_equal(await usage(), truth())

        # without day rows the hours answer the same
        await conn.execute("DELETE FROM usage_day")
        assert_equal(await usage(), truth())
        assert await keep_current(conn, now) == 0  # the keeper fills hours, not day rows
        await conn.execute("DELETE FROM usage_hour WHERE equipment_id = %s", (eid,))
        assert await keep_current(conn, now) > 0
        assert [r[0] for r in await rows(conn, "SELECT day FROM usage_day ORDER BY day")] == days

        # a late sample in the second whole day: that day's row and every later one are gone
        late = StatePoint(days[1] + 13 * H + timedelta(minutes=7), "mode", "MDI")
        points.append(late)
        await conn.execute(
            "INSERT INTO sample_text VALUES (%s, %s, %s)", (mode, late.ts, late.value)
        )
        assert [r[0] for r in await rows(conn, "SELECT day FROM usage_day ORDER BY day")] == [
            days[0]
        ]
        assert_equal(await usage(), truth())  # a request computes the hours it lacks
        await keep_current(conn, now)
        assert [r[0] for r in await rows(conn, "SELECT day FROM usage_day ORDER BY day")] == days
        assert_equal(await usage(), truth())


async def test_a_state_set_days_before_the_window_holds_in_it(database_url: str) -> None:
    """The state in force at the window's start comes from three days before it: further
    back than the day the state lookup searches first."""
    t = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 5 * H
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        m = await demo_machine(conn, "24h")
        ent, eid = m.enterprise, m.equipment
        await conn.execute(
            "INSERT INTO connectivity_session (group_id, edge_node_id, device_id, equipment_id,"
            " online_at) VALUES ('HXP', 'GW', 'CNC-01', %s, %s)",
            (eid, t - timedelta(days=4)),
        )
        for series, value in ((m.mode, "AUTO"), (m.execution, "EXECUTING")):
            await conn.execute(
                "INSERT INTO sample_text VALUES (%s, %s, %s)",
                (series, t - timedelta(days=3), value),
            )
        start, end = t + timedelta(minutes=10), t + timedelta(minutes=50)  # no whole hour
        result = await enterprise_indicators(conn, ent, start, end, Thresholds())
    got = next(r.usage for r in result.equipment if r.id == eid)
    assert (got.observed_s, got.executing_s, got.auto_executing_s, got.mdi_executing_s) == (
        2400.0,
        2400.0,
        2400.0,
        0.0,
    )
