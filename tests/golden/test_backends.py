"""The same telemetry gives identical indicator figures on plain PostgreSQL and on TimescaleDB:
three days of the demo plant's states and part counters, stored alike on both, old days packed
(plain) or compressed (TimescaleDB), the hourly usage roll-up kept current on both; every
enterprise's indicators with OEE, computed over the whole window and over a window cut inside
hours, compared field by field."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from plantwire_platform import services
from plantwire_platform.database import migrate
from plantwire_platform.indicators.enterprise import EnterpriseIndicators, enterprise_indicators
from plantwire_platform.indicators.formulas import Thresholds
from plantwire_platform.indicators.usage import keep_current
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.storage.partitions import maintain
from plantwire_sim.scenario import load_scenario

DAYS = 3


@pytest.fixture
def both(plain_admin_url: str, timescale_admin_url: str, unique: str) -> Iterator[list[str]]:
    made = [(plain_admin_url, f"plantwire_same_p_{unique}")]
    made.append((timescale_admin_url, f"plantwire_same_t_{unique}"))
    urls = [services.ensure_database(admin, name, fresh=True) for admin, name in made]
    yield urls
    for admin, name in made:
        services.drop_database(admin, name)


async def store(url: str, end: datetime) -> list[int]:
    """The demo plant's last DAYS days, generated from a fixed seed; the enterprise ids."""
    await migrate(url)
    rng = random.Random(18)
    start = end - timedelta(days=DAYS)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        scenario = load_scenario("demo")
        await import_registry(conn, registry_from(scenario.registry()))
        for ent, _site, machine in scenario.machines():
            cur = await conn.execute(
                "SELECT e.id FROM equipment e JOIN site s ON s.id = e.site_id"
                " JOIN enterprise x ON x.id = s.enterprise_id WHERE x.code = %s AND e.code = %s",
                (ent.code, machine.code),
            )
            eid = (await cur.fetchone() or (None,))[0]
            series = {}
            for metric, datatype in (
                ("State/Mode", 12),
                ("State/Execution", 12),
                ("Production/PartCount", 10),
            ):
                cur = await conn.execute(
                    "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                    " equipment_id) VALUES (%s, 'GW', %s, %s, %s, %s) RETURNING id",
                    (ent.code, machine.code, metric, datatype, eid),
                )
                series[metric] = (await cur.fetchone() or (None,))[0]
            online = start + timedelta(minutes=rng.randint(0, 90))
            offline = end - timedelta(hours=rng.choice((0, 0, 0, 30)), seconds=rng.randint(0, 3599))
            auto = rng.choice((0.97, 0.97, 0.5))  # most run in AUTO, some by hand
            await conn.execute(
                "INSERT INTO connectivity_session (group_id, edge_node_id, device_id,"
                " equipment_id, online_at, offline_at) VALUES (%s, 'GW', %s, %s, %s, %s)",
                (ent.code, machine.code, eid, online, offline),
            )
            text: list[tuple[Any, ...]] = []
            num: list[tuple[Any, ...]] = []
            t, parts = online, 0.0
            while t < offline:
                mode = "AUTO" if rng.random() < auto else rng.choice(("MANUAL", "MDI"))
                text.append((series["State/Mode"], t, mode))
                text.append((series["State/Execution"], t, "EXECUTING"))
                run = timedelta(seconds=rng.randint(60, 1500), milliseconds=rng.randint(0, 999))
                parts += rng.randint(1, 9)
                num.append((series["Production/PartCount"], t + run, parts))
                t += run
                text.append((series["State/Execution"], t, rng.choice(("IDLE", "PAUSED"))))
                t += timedelta(seconds=rng.randint(5, 400))
            async with conn.cursor() as cur:
                async with cur.copy("COPY sample_text (series_id, ts, value) FROM STDIN") as c:
                    for row in text:
                        await c.write_row(row)
                async with cur.copy("COPY sample_num (series_id, ts, value) FROM STDIN") as c:
                    for row in num:
                        await c.write_row(row)
        await conn.commit()
        cur = await conn.execute("SELECT id FROM enterprise ORDER BY id")
        return [r[0] for r in await cur.fetchall()]


async def figures(url: str, ids: list[int], end: datetime) -> list[EnterpriseIndicators]:
    out = []
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for a, b in (
            (end - timedelta(days=DAYS), end),  # roll-up hours and exact ends
            (end - timedelta(days=2, minutes=17), end - timedelta(hours=5, minutes=41)),
        ):
            for eid in ids:
                out.append(
                    await enterprise_indicators(conn, eid, a, b, Thresholds(), with_oee=True)
                )
    return out


async def compare(urls: list[str]) -> tuple[list[Any], dict[str, Any]]:
    end = datetime.now(UTC).replace(microsecond=0)
    ids = [await store(url, end) for url in urls]
    assert ids[0] == ids[1]
    report: dict[str, Any] = {}
    for url in urls:
        report[url] = await maintain(
            url, pack_after_days=1, compress_after_days=1, policies=True, now=end
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            report[url + "#hours"] = await keep_current(conn, end)
    return [await figures(url, ids[0], end) for url in urls], report


def test_identical_figures_on_both_backends(both: list[str]) -> None:
    (plain, timescale), report = asyncio.run(compare(both))
    # the compact forms were taken on each backend, the roll-up filled on both
    assert report[both[0]].packed_rows > 0 and report[both[1]].compressed_chunks > 0
    assert report[both[0] + "#hours"] == report[both[1] + "#hours"] > 24 * DAYS
    assert len(plain) == len(timescale) > 0
    # the figures mean something: machines ran, parts were counted
    assert any(e.lines for e in plain) and any(e.equipment_online for e in plain)
    for p, t in zip(plain, timescale, strict=True):
        assert p == t
    verified = [s.rates.verified for e in plain for s in e.segments]
    declared = [s.rates.declared for e in plain for s in e.segments]
    assert 0 < sum(verified) < sum(declared)  # some key processes count, not all
