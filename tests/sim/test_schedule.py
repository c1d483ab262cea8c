"""Scheduled faults and outages at local calendar times, against hand-computed instants."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from plantwire_sim.faults import FaultSpec
from plantwire_sim.schedule import Schedule
from plantwire_sim.scorecard import simulate
from tests.sim.test_scenario import scenario

SH = "Asia/Shanghai"
SHANGHAI = ZoneInfo(SH)
BERLIN = ZoneInfo("Europe/Berlin")


def ms(text: str, zone: ZoneInfo = SHANGHAI) -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=zone).timestamp() * 1000)


def occurrences(s: Schedule, t0: int, end: int, zone: str = SH) -> list[tuple[str, str]]:
    """(start, end) of each occurrence starting before ``end``, as local 'Mon 02 22:00'."""
    out, after = [], t0
    while (found := s.next_occurrence(t0, after, zone)) is not None and found[0] < end:
        a, b = (datetime.fromtimestamp(t / 1000, ZoneInfo(zone)) for t in found)
        out.append((a.strftime("%a %d %H:%M"), b.strftime("%a %d %H:%M")))
        after = found[0] + 1
    return out


def test_a_night_shutdown_every_night_from_22_00_for_8_hours() -> None:
    """Run from Monday 2026-03-02 23:00 local: the night already under way is on from the
    start (until 06:00), then every night 22:00-06:00."""
    night = Schedule(at="22:00", seconds=8 * 3600)
    t0 = ms("2026-03-02T23:00")
    assert occurrences(night, t0, t0 + 3 * 86_400_000) == [
        ("Mon 02 23:00", "Tue 03 06:00"),
        ("Tue 03 22:00", "Wed 04 06:00"),
        ("Wed 04 22:00", "Thu 05 06:00"),
        ("Thu 05 22:00", "Fri 06 06:00"),
    ]


def test_a_daily_time_on_some_days_only_and_across_a_dst_change() -> None:
    """Weekend shutdowns (Saturday, Sunday) at 18:00 Berlin time, 2026-03-27 (Friday) on:
    Europe/Berlin moves to summer time on Sunday 29 March, so that day's 18:00 is 16:00 UTC,
    Saturday's 17:00 UTC."""
    weekend = Schedule(at="18:00", days=(5, 6), seconds=3600)
    t0 = ms("2026-03-27T00:00", BERLIN)
    found = occurrences(weekend, t0, t0 + 4 * 86_400_000, "Europe/Berlin")
    assert found == [("Sat 28 18:00", "Sat 28 19:00"), ("Sun 29 18:00", "Sun 29 19:00")]
    sat = weekend.next_occurrence(t0, t0, "Europe/Berlin")
    assert sat is not None and sat[0] == ms("2026-03-28T17:00", ZoneInfo("UTC"))
    sun = weekend.next_occurrence(t0, sat[0] + 1, "Europe/Berlin")
    assert sun is not None and sun[0] == ms("2026-03-29T16:00", ZoneInfo("UTC"))


def test_a_date_and_time_once_or_repeated_and_an_offset() -> None:
    t0 = ms("2026-03-02T08:00")
    once = Schedule(at="2026-03-02T10:30", seconds=600)
    assert once.next_occurrence(t0, t0, "Asia/Shanghai") == (
        ms("2026-03-02T10:30"),
        ms("2026-03-02T10:40"),
    )
    assert once.next_occurrence(t0, ms("2026-03-02T10:31"), "Asia/Shanghai") is None
    # an explicit offset wins over the site's zone; every_s repeats a date and time
    offset = Schedule(at="2026-03-02T03:00+00:00", seconds=60, every_s=3600)
    assert offset.next_occurrence(t0, t0, "Asia/Shanghai") == (
        ms("2026-03-02T11:00"),
        ms("2026-03-02T11:01"),
    )
    assert offset.next_occurrence(t0, ms("2026-03-02T11:00") + 1, "Asia/Shanghai") == (
        ms("2026-03-02T12:00"),
        ms("2026-03-02T12:01"),
    )
    # before the run: nothing, unless still under way at the start
    assert Schedule(at="2026-03-02T07:00", seconds=60).next_occurrence(t0, t0, SH) is None
    under_way = Schedule(at="2026-03-02T07:30", seconds=3600)
    assert under_way.next_occurrence(t0, t0, "Asia/Shanghai") == (t0, ms("2026-03-02T08:30"))


def test_seconds_after_the_start_are_as_before() -> None:
    t0 = 1_000_000
    every = Schedule(at_s=10, seconds=2, every_s=30)
    assert every.next_occurrence(t0, t0) == (t0 + 10_000, t0 + 12_000)
    assert every.next_occurrence(t0, t0 + 10_001) == (t0 + 40_000, t0 + 42_000)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"at": "25:00"}, "at '25:00': expected a local time of day 'HH:MM' (daily)"),
        ({"at": "2026-02-30T10:00"}, "at '2026-02-30T10:00': expected a local date and time"),
        ({"at": "10:00", "at_s": 5}, "either at_s (seconds after the start) or at"),
        ({}, "either at_s (seconds after the start) or at"),
        ({"at": "10:00", "every_s": 60}, "at '10:00' repeats daily: every_s is for at_s"),
        ({"at": "10:00", "days": [7]}, "days are 0 (Monday) .. 6 (Sunday)"),
        ({"at_s": 1, "days": [1]}, "days are for a daily time"),
        ({"at": "10:00+08:00"}, "a daily time is in the site's time zone"),
    ],
)
def test_bad_times_are_refused_with_a_clear_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        FaultSpec.model_validate({"machine": "M1", "kind": "restart", "seconds": 1, **fields})
    assert message in str(info.value)


def test_the_truth_records_faults_and_outages_at_the_sites_local_times() -> None:
    """A site in Shanghai, the run from 2026-03-02 20:00 local for 12 h: a nightly restart of
    M1 at 22:00 for 8 h and, in a scenario file, an uplink outage at 02:30 local; the fault
    records start and end at those local times."""
    s = scenario(
        top='[[faults]]\nmachine = "M1"\nkind = "restart"\nat = "22:00"\nseconds = 28800\n'
        '[[outages]]\nsite = "S1"\nat = "2026-03-03T02:30"\nseconds = 600\n',
        site='timezone = "Asia/Shanghai"',
    )
    assert s.outages[0].next_occurrence(ms("2026-03-02T20:00"), 0, s.timezone(site="S1")) == (
        ms("2026-03-03T02:30"),
        ms("2026-03-03T02:40"),
    )
    truth = simulate(s, ms("2026-03-02T20:00"), 12 * 3600)
    assert [(f.start_ms, f.end_ms) for f in truth.faults("M1")] == [
        (ms("2026-03-02T22:00"), ms("2026-03-03T06:00"))
    ]
