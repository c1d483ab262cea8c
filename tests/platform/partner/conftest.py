"""A small world for the partner API on a real PostgreSQL: a chain leader LEAD, its supplier SUP
(two sites, one machine each, telemetry written straight into the sample tables, alarms and
events into the event table), SIB, another supplier of the same chain, and OUT, an enterprise
outside the chain. SUP offers seven datasets; every sample is listed in SAMPLES and every alarm
or event in EVENTS so tests can compute what a grant allows independently of the SQL under test.
Every caller in CALLERS is a registered client (tokens are checked against the client's status
on every call).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from plantwire_platform.partner.tokens import Caller, issue_token
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.settings import PlatformSettings
from plantwire_sim.scenario import parse_scenario
from tests.platform.identities import in_process

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
KEY = "k7Qx2mVb9TzR4wLp8Yc3Nf6Hd1Js5Ga0Ue"
AUDIT_KEY = "Pq8Zr3Lw6Vx1Nc9Hb4Tm7Ks2Fj5Gd0Ya"

SCENARIO = """
name = "partners"
[[chains]]
code = "GEAR"
name = "Gearbox chain"
leader = "LEAD"
members = [{ enterprise = "SUP", tier = 1 }, { enterprise = "SIB", tier = 1 }]
""" + "".join(
    f"""
[[enterprises]]
code = "{code}"
uscc = "9111000000000000{n}X"
name = "{code} Co."
"""
    + "".join(
        f"""
[[enterprises.sites]]
code = "{site}"
name = "{site}"
edge_node = "GW{site}"
timezone = "UTC"
[[enterprises.sites.lines]]
code = "L"
name = "Line"
processes = [
  {{ code = "OP10", name = "OP10", is_key = true, key_reason = "tolerance", equipment = ["{m}"] }},
]
[[enterprises.sites.equipment]]
code = "{m}"
name = "{m}"
line = "L"
control_type = "CNC"
declared_nc = true
protocol = "none"
"""
        for site, m in sites
    )
    for n, (code, sites) in enumerate(
        [
            ("LEAD", [("LS", "L1")]),
            ("SUP", [("S1", "M1"), ("S2", "M2")]),
            ("OUT", [("OS", "O1")]),
            ("SIB", [("BS", "B1")]),
        ]
    )
)


def _samples() -> list[tuple[str, str, datetime, Any]]:
    """(machine, metric, time, value) of every sample written, over 09:00-12:00."""
    out: list[tuple[str, str, datetime, Any]] = []
    for machine, scale in (("M1", 5), ("M2", 3), ("L1", 1), ("O1", 2)):
        for minute in range(-60, 120, 30):
            ts = T0 + timedelta(minutes=minute)
            auto = (minute // 30) % 2 == 0
            out.append((machine, "State/Mode", ts, "AUTO" if auto else "MANUAL"))
            out.append((machine, "State/Execution", ts, "EXECUTING"))
        for minute in range(-60, 120, 10):
            ts = T0 + timedelta(minutes=minute)
            out.append((machine, "Production/PartCount", ts, float((minute + 60) * scale)))
        for minute in range(-60, 120, 15):
            ts = T0 + timedelta(minutes=minute)
            out.append((machine, "Spindle/Speed", ts, float(1000 + minute)))
            out.append((machine, "Spindle/Load", ts, float(minute % 7)))
    return out


SAMPLES = _samples()


def _events() -> list[tuple[str, str, str, datetime, str]]:
    """(machine, kind, name, time, value) of every alarm and event written, 09:00-12:00."""
    out: list[tuple[str, str, str, datetime, str]] = []
    for machine in ("M1", "M2", "L1", "O1"):
        for minute in range(-55, 120, 20):
            active = (minute // 20) % 2 == 0
            ts = T0 + timedelta(minutes=minute)
            out.append((machine, "alarm", "Alarm/SpindleOverload", ts, str(active).lower()))
        for minute in range(-50, 120, 45):
            ts = T0 + timedelta(minutes=minute)
            out.append((machine, "event", "Event/ToolChange", ts, f"T{minute % 9}"))
    return out


EVENTS = _events()

# code -> (kind, grade, granularity, purposes, visibility)
DATASETS = {
    "ind": ("indicators", "important", "aggregated", ["quality", "planning"], "chain"),
    "states": ("states", "general", "raw", ["planning"], "chain"),
    "counts": ("counts", "general", "aggregated", ["planning"], "chain"),
    "telem": ("telemetry", "general", "raw", ["maintenance"], "chain"),
    "alarms": ("alarms", "general", "raw", ["quality"], "chain"),
    "core": ("telemetry", "core", "aggregated", ["planning"], "chain"),
    "private": ("counts", "general", "aggregated", ["planning"], "private"),
}


@dataclass
class World:
    client: httpx.AsyncClient
    url: str
    ent: dict[str, int]
    site: dict[str, int]
    machine: dict[str, int]
    dataset: dict[str, int]
    tokens: dict[str, str] = field(default_factory=dict)
    app: Any = None

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


CALLERS = {
    "admin": (None, "platform_admin"),
    "sup-admin": ("SUP", "enterprise_admin"),
    "sup-app": ("SUP", "partner"),
    "lead-admin": ("LEAD", "enterprise_admin"),
    "lead-app": ("LEAD", "partner"),
    "out-admin": ("OUT", "enterprise_admin"),
    "out-app": ("OUT", "partner"),
    "sib-admin": ("SIB", "enterprise_admin"),
    "sib-app": ("SIB", "partner"),
}


async def seed(url: str) -> tuple[dict[str, int], dict[str, int], dict[str, int], dict[str, int]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        ent = await import_registry(conn, registry_from(parse_scenario(SCENARIO).registry()))
        cur = await conn.execute("SELECT code, id FROM site")
        site = {c: i for c, i in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT e.code, e.id, x.code, s.edge_node_id FROM equipment e"
            " JOIN site s ON s.id = e.site_id JOIN enterprise x ON x.id = s.enterprise_id"
        )
        machines = await cur.fetchall()
        machine = {c: i for c, i, _, _ in machines}
        for who, (code, role) in CALLERS.items():
            await conn.execute(
                "INSERT INTO partner_client (id, enterprise_id, role) VALUES (%s, %s, %s)",
                (who, ent[code] if code else None, role),
            )
        for code, eid, group, node in machines:
            if code == "B1":
                continue  # SIB's machine sends nothing
            await conn.execute(
                "INSERT INTO connectivity_session (group_id, edge_node_id, device_id,"
                " equipment_id, online_at) VALUES (%s, %s, %s, %s, %s)",
                (group, node, code, eid, T0 - timedelta(hours=2)),
            )
            for metric in sorted({s[1] for s in SAMPLES} | {e[2] for e in EVENTS}):
                text = not metric.startswith(("Production/", "Spindle/"))
                await conn.execute(
                    "INSERT INTO series (group_id, edge_node_id, device_id, metric, datatype,"
                    " equipment_id) VALUES (%s, %s, %s, %s, %s, %s)",
                    (group, node, code, metric, 12 if text else 10, eid),
                )
        async with conn.cursor() as cur2:
            for m, metric, ts, value in SAMPLES:
                table = "sample_text" if metric.startswith("State/") else "sample_num"
                await cur2.execute(
                    f"INSERT INTO {table} (series_id, ts, value) SELECT id, %s, %s FROM series"
                    " WHERE device_id = %s AND metric = %s",
                    (ts, value, m, metric),
                )
            for m, kind, name, ts, value in EVENTS:
                await cur2.execute(
                    "INSERT INTO event (ts, group_id, edge_node_id, device_id, kind, name,"
                    " series_id, value) SELECT %s, group_id, edge_node_id, device_id, %s, %s,"
                    " id, %s FROM series WHERE device_id = %s AND metric = %s",
                    (ts, kind, name, value, m, name),
                )
        dataset = {}
        for code, (kind, grade, gran, purposes, vis) in DATASETS.items():
            cur = await conn.execute(
                "INSERT INTO partner_dataset (enterprise_id, code, title, kind, domain, grade,"
                " granularity, purposes, visibility) VALUES (%s, %s, %s, %s, 'production', %s,"
                " %s, %s, %s) RETURNING id",
                (ent["SUP"], code, code.title(), kind, grade, gran, purposes, vis),
            )
            row = await cur.fetchone()
            assert row is not None
            dataset[code] = row[0]
        await conn.commit()
    return ent, site, machine, dataset


def settings(url: str, **extra: Any) -> PlatformSettings:
    return PlatformSettings(
        database_url=url, token_secret=SecretStr(KEY), audit_key=SecretStr(AUDIT_KEY), **extra
    )


def tokens(ent: dict[str, int]) -> dict[str, str]:
    """A token of each caller in CALLERS (``ent``: the enterprises' ids by code)."""
    return {
        who: issue_token(Caller(who, ent[code] if code else None, role), KEY, 300)  # type: ignore[arg-type]
        for who, (code, role) in CALLERS.items()
    }


@contextlib.asynccontextmanager
async def serving(database_url: str, **extra: Any) -> AsyncIterator[World]:
    """The seeded world with the API (and its background tasks) running in-process; ``extra``
    settings override the defaults (rate limits high enough not to interfere)."""
    ent, site, machine, dataset = await seed(database_url)
    limits = {"partner_rate_per_s": 10_000, "partner_burst": 10_000}
    async with in_process(settings(database_url, **{**limits, **extra})) as (app, c):
        yield World(c, database_url, ent, site, machine, dataset, tokens(ent), app)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    async with serving(database_url) as w:
        yield w


async def grant(w: World, dataset: str, **request: Any) -> dict[str, Any]:
    """Request, approve if needed and activate a grant for LEAD; returns the active grant."""
    body = {
        "dataset_id": w.dataset[dataset],
        "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        **request,
    }
    r = await w.client.post("/partner/v1/grants", json=body, headers=w.auth("lead-app"))
    assert r.status_code == 201, r.text
    g = r.json()
    if g["status"] == "requested":
        r = await w.client.post(
            f"/partner/v1/grants/{g['id']}/approve", headers=w.auth("sup-admin")
        )
        assert r.status_code == 200, r.text
    r = await w.client.post(f"/partner/v1/grants/{g['id']}/activate", headers=w.auth("lead-app"))
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    result: dict[str, Any] = r.json()
    return result
