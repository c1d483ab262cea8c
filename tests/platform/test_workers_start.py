"""Worker processes started with the API: running when start() returns (their jobs' modules
imported), and they run jobs against the real database."""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import UTC, datetime, timedelta

from plantwire_platform.indicators.formulas import Thresholds
from plantwire_platform.indicators.jobs import indicators_job
from plantwire_platform.workers import WorkerPool


def test_started_workers_are_running_and_run_jobs(database_url: str) -> None:
    before = set(multiprocessing.active_children())
    pool = WorkerPool(database_url, 2, 5_000)
    pool.start("plantwire_platform.indicators.jobs")
    try:
        started = set(multiprocessing.active_children()) - before
        assert len(started) == 2 and all(p.is_alive() for p in started)
        now = datetime.now(UTC)
        hour_ago = now - timedelta(hours=1)
        got = asyncio.run(pool.run(indicators_job, 999, hour_ago, now, Thresholds()))
        # no such enterprise: nothing registered, so no figure (the worker computed that)
        assert got[0].name == "nc_rate_declared" and got[0].value is None
        assert (got[0].reason or "").startswith("before_registry")
        assert set(multiprocessing.active_children()) - before == started  # no new ones
    finally:
        asyncio.run(pool.close())
