"""Upkeep of the sample hypertables when the database runs TimescaleDB (migration 0003).

Compression and retention are TimescaleDB policies whose settings follow plantwire's
(``compress_after_days``, ``retention_days``): :func:`apply_policies` adds, changes or removes
them, and :func:`run_policies` runs them with ``CALL run_job`` on each maintenance pass, so they
take effect whether or not TimescaleDB's own scheduler runs (on PostgreSQL 15.20 its jobs do
their work but are recorded as failed; plantwire's test clusters run without it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg

log = logging.getLogger(__name__)

HYPERTABLES = ("sample_num", "sample_bool")
_POLICIES = {
    "policy_compression": ("compress_after", "add_compression_policy", "remove_compression_policy"),
    "policy_retention": ("drop_after", "add_retention_policy", "remove_retention_policy"),
}


@dataclass(slots=True)
class PolicyReport:
    changed: list[str] = field(default_factory=list)
    ran: int = 0
    compressed_chunks: int = 0
    chunks: int = 0


async def _jobs(conn: psycopg.AsyncConnection[Any], table: str) -> dict[str, tuple[int, Any]]:
    cur = await conn.execute(
        "SELECT proc_name, job_id, config FROM timescaledb_information.jobs"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = %s",
        (table,),
    )
    return {str(r[0]): (int(r[1]), r[2]) for r in await cur.fetchall()}


async def apply_policies(
    conn: psycopg.AsyncConnection[Any],
    *,
    compress_after_days: int | None,
    retention_days: int | None,
) -> list[str]:
    """Make the hypertables' compression and retention policies say what the settings say
    (None: no such policy); returns what changed."""
    wanted = {"policy_compression": compress_after_days, "policy_retention": retention_days}
    changed = []
    for table in HYPERTABLES:
        jobs = await _jobs(conn, table)
        for proc, days in wanted.items():
            key, add, remove = _POLICIES[proc]
            have = jobs.get(proc)
            if have is not None and days is not None:
                cur = await conn.execute(
                    "SELECT %s::interval = make_interval(days => %s)",
                    (str((have[1] or {}).get(key)), days),
                )
                same = await cur.fetchone()
                if same and same[0]:
                    continue
            if have is not None:
                await conn.execute(f"SELECT {remove}(%s::regclass)", (table,))
            if days is not None:
                await conn.execute(
                    f"SELECT {add}(%s::regclass, {key} => make_interval(days => %s))",
                    (table, days),
                )
            changed.append(f"{table}: {proc.removeprefix('policy_')} " + (
                f"after {days} days" if days is not None else "off"
            ))  # fmt: skip
    for line in changed:
        log.info("TimescaleDB policy %s", line)
    return changed


async def run_policies(conn: psycopg.AsyncConnection[Any]) -> PolicyReport:
    """Run every compression and retention policy of the hypertables now."""
    report = PolicyReport()
    for table in HYPERTABLES:
        for proc, (job_id, _) in sorted((await _jobs(conn, table)).items()):
            if proc in _POLICIES:
                await conn.execute("CALL run_job(%s)", (job_id,))
                report.ran += 1
    cur = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE is_compressed)"
        " FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s)",
        (list(HYPERTABLES),),
    )
    row = await cur.fetchone()
    if row:
        report.chunks, report.compressed_chunks = int(row[0]), int(row[1])
    return report
