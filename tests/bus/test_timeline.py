"""The simulation time line shared through a file: the formula, holding and following."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwire_bus.timeline import (
    NO_HOLD,
    FollowedClock,
    TimeLine,
    TimeLineFile,
    TimeLineUnavailable,
)


def test_simulated_time_runs_at_speed_up_to_the_hold_and_the_wall_clock() -> None:
    line = TimeLine(start_ms=1_000_000, speed=60, wall0=100.0)
    assert line.at(101.0) == 1_060_000
    assert line.wall_at(1_060_000) == 101.0
    assert TimeLine(1_000_000, 60, 100.0, hold_ms=1_030_000).at(101.0) == 1_030_000
    # a replay of the past at 60x: never later than the wall clock (1 000 s = 1 000 000 ms)
    replay = TimeLine(start_ms=900_000, speed=60, wall0=990.0, catch_up=True)
    assert replay.at(990.5) == 930_000 and not replay.live_at(990.5)
    assert replay.at(1_000.0) == 1_000_000 and replay.live_at(1_000.0)
    assert replay.free_at(1_000.0) == 1_000_000
    assert replay.wall_at(1_500_000) == 1_500.0  # live: at 1x


def test_a_gateway_follows_the_published_time_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = [100.0]
    monkeypatch.setattr("plantwire_bus.timeline.time.time", lambda: wall[0])
    path = tmp_path / "clock"
    published = TimeLineFile(path, TimeLine(1_000_000, 10, 100.0))
    follower = FollowedClock(path)
    assert follower.speed == 10
    wall[0] = 101.0
    assert follower.now_ms() == 1_010_000
    published.write(TimeLine(1_000_000, 10, 100.0, hold_ms=1_012_000))
    wall[0] = 102.0
    assert follower.now_ms() == 1_012_000  # held where the simulator is
    published.write(TimeLine(1_000_000, 10, 100.8, hold_ms=NO_HOLD))  # slowed by 0.8 s
    assert follower.now_ms() == 1_012_000
    wall[0] = 102.1
    assert follower.now_ms() == 1_013_000
    published.write(TimeLine(1_000_000, 10, 101.0))  # never backwards, even so
    assert follower.now_ms() == 1_013_000
    follower.close()
    published.close()


def test_a_file_without_a_time_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TimeLineUnavailable, match="No such file"):
        FollowedClock(tmp_path / "missing")
    (tmp_path / "other").write_bytes(b"x" * 64)
    with pytest.raises(TimeLineUnavailable, match="not a plantwire simulation time line"):
        FollowedClock(tmp_path / "other")
