"""The golden-test plant, everything real: ``plantwire sim run`` serving a scenario's machines
(OPC UA, Modbus TCP, MQTT) at an accelerated clock in a process of its own, an edge gateway
per site in this process following the simulator's clock (``--clock-file``), Mosquitto, the
ingest, PostgreSQL and the HTTP API; then every indicator the API reports over the run's
window, side by side with the value :mod:`plantwire_sim.expected` computes from the ground
truth file alone.

The simulator runs apart because a shop floor and a gateway are different machines: sharing
one Python process (one core) with 155 OPC UA sessions, the ingest and the API, its scheduler
and the gateway's Modbus polls fall behind by tens of milliseconds, which at 20x is a second
of simulated time, and a polled Modbus state shorter than that is no longer observable.
"""

from __future__ import annotations

import asyncio
import gc
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from plantwire_bus.mosquitto import free_port
from plantwire_bus.timeline import FollowedClock
from plantwire_edge.config import EdgeConfig
from plantwire_edge.gateway import Gateway
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.registry.document import registry_from
from plantwire_platform.registry.store import import_registry
from plantwire_platform.server import api_server
from plantwire_sim.control import request
from plantwire_sim.expected import INDICATORS, EnterpriseTruth, Oee, expected, roll_up
from plantwire_sim.gateway_config import gateway_config
from plantwire_sim.placement import PROTOCOLS, ModbusAddress
from plantwire_sim.scenario import Scenario, load_scenario
from plantwire_sim.truth import read_truth_file
from tests.golden.wire_recorder import WireRecorder
from tests.platform.identities import person, secured

NC_TOLERANCE = 0.01  # rates: 1 percentage point
OEE_TOLERANCE = 0.02  # OEE and its factors: 2 percentage points
GROUPS = ("chains", "parks", "regions")
_CONTROL = re.compile(r"control port 127\.0\.0\.1:(\d+)")
TAIL_S = 1.5  # wall seconds the simulator runs past the window, so its end is delivered
STARTUP_S = 240.0  # wall seconds the simulator may take to serve every machine


@pytest.fixture
def wire(mqtt_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WireRecorder]:
    """The Sparkplug wire, the gateways' log and their feeds' stamps of the test's run, read
    when the platform refused a value (:mod:`tests.golden.wire_recorder`)."""
    with WireRecorder.running(mqtt_url, tmp_path / "wire", monkeypatch) as recorder:
        yield recorder


def fixed_start(at: str, timezone: str, weekdays: Collection[int], before: datetime) -> int:
    """Epoch ms of local time ``at`` on the latest of ``weekdays`` (Monday = 0) before
    ``before``: a run that starts there meets the same shift calendar whenever the test runs."""
    zone = ZoneInfo(timezone)
    hour, minute = (int(x) for x in at.split(":"))
    day: date = before.astimezone(zone).date()
    while True:
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if candidate.weekday() in weekdays and candidate < before:
            return round(candidate.timestamp() * 1000)
        day -= timedelta(days=1)


@dataclass
class Report:
    """What the API said about the window, and how the run went."""

    start_ms: int
    end_ms: int
    enterprises: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> indicators
    explanations: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> explain
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # "chains/EDRIVE" -> report
    truth_path: Path | None = None
    wall_s: dict[str, float] = field(default_factory=dict)
    dead_letters: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Simulation:
    """``plantwire sim run`` in a process of its own, seen through its control port."""

    process: asyncio.subprocess.Process
    control: int
    log: Path
    status: dict[str, Any] = field(default_factory=dict)

    clock_file: Path | None = None

    def follow_clock(self) -> FollowedClock:
        """The simulator's clock, followed through the file it publishes (it slows down when
        the simulator falls behind, so that its clock never runs past its machines)."""
        assert self.clock_file is not None
        return FollowedClock(self.clock_file)

    def where(self, protocol: str) -> dict[str, dict[str, Any]]:
        return {code: m for code, m in self.status["machines"].items() if m["protocol"] == protocol}

    def gateway_config(
        self, scenario: Scenario, enterprise: str, site: str, mqtt_url: str, host_id: str,
        plant_mqtt_url: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The site's gateway config; a site whose uplink the scenario cuts reaches the broker
        through the simulator's relay."""
        e = next(x for x in scenario.enterprises if x.code == enterprise)
        s = next(x for x in e.sites if x.code == site)
        return gateway_config(
            e,
            s,
            {code: m["endpoint"] for code, m in self.where("opcua").items()},
            self.status.get("uplinks", {}).get(site, mqtt_url),
            host_id,
            protocols=PROTOCOLS,
            modbus={
                code: ModbusAddress(m["host"], m["port"], m["unit_id"])
                for code, m in self.where("modbus").items()
            },
            mqtt_topics={code: m["topic"] for code, m in self.where("mqtt").items()},
            device_broker_url=plant_mqtt_url or mqtt_url,
        )


@asynccontextmanager
async def simulation(
    name: str, mqtt_url: str, workdir: Path, *, speed: float, start_ms: int, seconds: float,
    held: bool = False,
) -> AsyncIterator[Simulation]:  # fmt: skip
    """Serve scenario ``name`` for ``seconds`` simulated seconds from ``start_ms``, writing
    its ground truth (states, parts, faults) to ``workdir/truth.jsonl``. ``held``: simulated
    time waits at ``start_ms`` for a ``go`` on the control port, and the simulator keeps
    serving after the run until the block exits (``--hold-start --linger``)."""
    log = workdir / "sim.log"
    start = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from plantwire.cli import main; "
            "sys.exit(main())", "sim", "run", "--scenario", name, "--base-port", "0",
            "--mqtt-url", mqtt_url, "--speed", str(speed), "--start", start,
            "--duration", str(seconds), "--truth", str(workdir / "truth.jsonl"),
            "--truth-states-only", "--control", "0", "--clock-file", str(workdir / "clock"),
            *(("--hold-start", "--linger") if held else ()),
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        # serving 157 machines takes ~20 s on a quiet machine and minutes on a busy one: wait
        # as long as the simulator lives, up to a bound that still names a hung one
        deadline = time.monotonic() + STARTUP_S
        while (found := _CONTROL.search(log.read_text())) is None:
            assert process.returncode is None, f"the simulator exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no simulator: {log.read_text()[-3000:]}"
            await asyncio.sleep(0.1)
        sim = Simulation(process, int(found.group(1)), log, clock_file=workdir / "clock")
        sim.status = await request("127.0.0.1", sim.control, {"op": "status"})
        yield sim
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


async def run_plant(
    scenario_name: str,
    database_url: str,
    mqtt_url: str,
    workdir: Path,
    *,
    speed: float,
    seconds: float,
    start_ms: int,
    host_id: str,
    onboard: Callable[[str], Awaitable[None]] | None = None,
    gateways: Callable[[Simulation, Scenario], Awaitable[list[EdgeConfig]]] | None = None,
    plant_mqtt_url: str | None = None,
    api_settings: Mapping[str, Any] | None = None,
    window_s: tuple[float, float] | None = None,
) -> tuple[Scenario, Report]:
    """Run a built-in scenario for ``seconds`` simulated seconds from ``start_ms`` at ``speed``
    through the whole data path; ask the API about the window from a whole simulated minute
    after every device was born to ``start_ms + seconds``. The registry is the scenario's,
    unless ``onboard`` registers the plant: it is given the API's URL once the API serves,
    before any machine or gateway starts. The gateways' configs are the simulator's
    (``plantwire sim gateway-config``), unless ``gateways`` makes them once the simulated
    machines serve. The ingest and the gateways speak Sparkplug over ``mqtt_url``; the
    machines' vendor MQTT goes to ``plant_mqtt_url`` (default: the same broker).
    ``api_settings`` are further settings of the platform (ingest and API).

    With ``window_s`` = (from, to) the window is fixed, in simulated seconds after
    ``start_ms``, and the run is held: simulated time starts once every device is born (at
    ``start_ms``), and the gateways forward what they hold before the simulator stops (its
    uplink relays stay up). The scenario's registry changes are imported while the run passes
    them, effective at their time."""
    began = time.monotonic()
    plant_url = plant_mqtt_url or mqtt_url
    scenario = load_scenario(scenario_name)
    if onboard is None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await import_registry(conn, registry_from(scenario.registry()))
    settings = secured(
        database_url,
        mqtt_url=mqtt_url,
        host_id=host_id,
        api_port=free_port(),
        batch_age_ms=100,
        **(api_settings or {}),
    )
    held = window_s is not None
    if window_s is not None:
        seconds = window_s[1]
    end_ms = start_ms + round(seconds * 1000)
    stop_ingest, stop_edge = asyncio.Event(), asyncio.Event()
    ingest = IngestWorker(settings)
    server = api_server(settings)
    wall: dict[str, float] = {}
    edges: list[asyncio.Task[None]] = []
    async with asyncio.TaskGroup() as tg:
        tg.create_task(ingest.run(stop_ingest))
        tg.create_task(server.serve())
        await asyncio.wait_for(ingest.ready.wait(), 20)
        if onboard is not None:
            await _until(lambda: server.started, "the API serves", 20)
            await onboard(f"http://127.0.0.1:{settings.api_port}")
            wall["onboarded"] = time.monotonic() - began
        try:
            async with simulation(
                scenario_name, plant_url, workdir, speed=speed, start_ms=start_ms,
                seconds=seconds + TAIL_S * speed, held=held,
            ) as sim:  # fmt: skip
                wall["simulator up"] = time.monotonic() - began
                clock = sim.follow_clock()
                if gateways is not None:
                    configs = await gateways(sim, scenario)
                    wall["gateways provisioned"] = time.monotonic() - began
                else:
                    configs = [
                        EdgeConfig.model_validate(
                            sim.gateway_config(
                                scenario, e.code, s.code, mqtt_url, host_id, plant_url
                            )
                        )
                        for e in scenario.enterprises
                        for s in e.sites
                        if any(m.protocol != "none" for m in s.machines)
                    ]
                edge_nodes = [Gateway(c, clock=clock) for c in configs]
                edges += [tg.create_task(g.run(stop_edge)) for g in edge_nodes]
                devices = sum(len(g.config.devices) for g in edge_nodes)
                await _until(lambda: _born(edge_nodes) == devices, "every device born", 60)
                if held:
                    assert (await request("127.0.0.1", sim.control, {"op": "go"}))["ok"]
                born_ms = clock.now_ms()
                wall["devices born"] = time.monotonic() - began
                changes = tg.create_task(_registry_changes(scenario, database_url, clock, start_ms))
                # this process's heap (pytest, the platform, 155 OPC UA sessions) is large: a
                # full collection stops the event loop for ~0.2 s, 4 simulated seconds at 20x,
                # in which no Modbus machine is polled; at a real plant's 1x it is harmless
                gc.freeze()
                if window_s is not None:
                    window_start = start_ms + round(window_s[0] * 1000)
                    assert born_ms <= window_start, "the gateways were born after the window began"
                else:
                    window_start = (born_ms // 60_000 + 1) * 60_000
                    assert window_start < end_ms - 60_000, "the gateways took the whole run"
                await _played(sim, clock, held)
                wall["simulator done"] = time.monotonic() - began
                assert changes.done(), "the run ended before its registry changes"
                await changes
                if held:  # the simulator serves (its uplink relays too) until all is stored
                    await _settle(edge_nodes, ingest)
                else:
                    assert sim.process.returncode == 0, sim.log.read_text()[-3000:]
            if not held:
                await _settle(edge_nodes, ingest)
            wall["stored"] = time.monotonic() - began
            report = await _ask(settings.api_port, database_url, window_start, end_ms)
            wall["asked"] = time.monotonic() - began
        finally:
            gc.unfreeze()
            stop_edge.set()
            await asyncio.gather(*edges, return_exceptions=True)
            stop_ingest.set()
            server.should_exit = True
    report.truth_path = workdir / "truth.jsonl"
    report.wall_s = {k: round(v, 1) for k, v in wall.items()}
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # each letter whole, with its topic: a conflicting_value names the metric, the time,
        # the value refused and the one stored there
        sql = "SELECT reason, topic || ': ' || detail FROM dead_letter ORDER BY id"
        cur = await conn.execute(sql)
        report.dead_letters = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
    return scenario, report


STALL_S = 60.0


async def _played(sim: Simulation, clock: FollowedClock, lingers: bool = False) -> None:
    """Wait for the simulator to play the run to its end (its exit, or, when it ``lingers``
    after the run, its status saying so): as long as that takes while its clock moves (it
    slows down on a busy machine rather than part from its values), failing when it stands
    still for a minute."""
    done = asyncio.ensure_future(_finished(sim) if lingers else sim.process.wait())
    last = clock.now_ms()
    while not done.done():
        await asyncio.wait({done}, timeout=STALL_S)
        now = clock.now_ms()
        assert done.done() or now > last, f"the simulator stood still at {now} for {STALL_S} s"
        last = now
    await done


async def _finished(sim: Simulation) -> None:
    while not (await request("127.0.0.1", sim.control, {"op": "status"}))["finished"]:
        assert sim.process.returncode is None, f"the simulator exited: {sim.log.read_text()}"
        await asyncio.sleep(0.2)


async def _registry_changes(
    scenario: Scenario, database_url: str, clock: FollowedClock, start_ms: int
) -> None:
    """Tell the platform of each registry change of the scenario once the run reaches it,
    effective at its time (the registry as a plant's admin would import it then)."""
    made = [(scenario.change_ms(c, start_ms), i) for i, c in enumerate(scenario.registry_changes)]
    for at_ms, _ in sorted((at, i) for at, i in made if at is not None):
        while clock.now_ms() < at_ms:
            await asyncio.sleep(0.01)
        after_s = (at_ms - start_ms) / 1000
        document = registry_from(scenario.registry(after_s=after_s, t0_ms=start_ms))
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await import_registry(conn, document, datetime.fromtimestamp(at_ms / 1000, UTC))


def _born(gateways: list[Gateway]) -> int:
    return sum(ch.born for g in gateways for ch in g.node.channels.values())


async def _until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


async def _settle(gateways: list[Gateway], ingest: IngestWorker) -> None:
    """Wait until the gateways have sent everything and the ingest has stored it."""

    def backlog() -> int:
        return sum(
            len(ch.staged) + len(ch.unsent) + len(ch.inflight)
            for g in gateways
            for ch in g.node.channels.values()
        )

    await asyncio.sleep(0.5)  # the devices' last notifications and polls reach the gateways
    # as long as the backlog shrinks (on a busy machine the host confirms slowly: 60 s were
    # not enough once under load), failing when it stands still for a minute
    last, moved = backlog(), time.monotonic()
    while (left := backlog()) > 0:
        if left < last:
            last, moved = left, time.monotonic()
        assert time.monotonic() - moved < STALL_S, (
            f"gateways: {left} batches unsent or unconfirmed; ingest {ingest.stats}; "
            + "; ".join(f"{g.config.edge_node_id} {g.node.stats}" for g in gateways)
        )
        await asyncio.sleep(0.05)
    # what the broker took: a message published into a connection the uplink outage cut
    # never reached it (the gateway sent its batch again on the next connection)
    taken = sum(g.node.stats.acknowledged for g in gateways)
    deadline = time.monotonic() + STALL_S
    while ingest.stats.sparkplug_messages < taken:
        assert time.monotonic() < deadline, (
            f"ingest took {ingest.stats.sparkplug_messages} of the {taken} messages the broker"
            f" took within {STALL_S} s: {ingest.stats}; gateways: "
            + "; ".join(f"{g.config.edge_node_id} {g.node.stats}" for g in gateways)
        )
        await asyncio.sleep(0.05)
    batches = -1
    while batches != ingest.stats.batches:  # then until no batch was written for a while
        batches = ingest.stats.batches
        await asyncio.sleep(0.6)


async def _ask(port: int, database_url: str, start_ms: int, end_ms: int) -> Report:
    report = Report(start_ms, end_ms)
    window = {
        "from": datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(),
        "to": datetime.fromtimestamp(end_ms / 1000, UTC).isoformat(),
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        http.headers.update(await person(http, database_url, "golden-admin", "platform_admin"))

        async def get(path: str) -> Any:
            r = await http.get(path, params=window)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:500]}"
            return r.json()

        for ent in (await http.get("/api/v1/enterprises")).json():
            base = f"/api/v1/enterprises/{ent['id']}/indicators"
            report.enterprises[ent["code"]] = await get(base)
            report.explanations[ent["code"]] = await get(f"{base}/explain")
        for kind in GROUPS:
            for group in (await http.get(f"/api/v1/{kind}")).json():
                body = await get(f"/api/v1/{kind}/{group['id']}/indicators")
                report.groups[f"{kind}/{group.get('code') or group['id']}"] = body
    return report


# -- comparing ---------------------------------------------------------------------------
@dataclass
class Comparison:
    """Every compared figure as (what, platform, truth, tolerance)."""

    rows: list[tuple[str, float | None, float | None, float]] = field(default_factory=list)

    def check(self, what: str, got: float | None, want: float | None, tolerance: float) -> None:
        self.rows.append((what, got, want, tolerance))

    @property
    def failures(self) -> list[str]:
        return [
            f"{what}: platform {got} truth {want} (tolerance {tol})"
            for what, got, want, tol in self.rows
            if not _close(got, want, tol)
        ]


def _close(got: float | None, want: float | None, tolerance: float) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return math.isclose(got, want, abs_tol=tolerance + 1e-9)


def compare(scenario: Scenario, report: Report) -> tuple[Comparison, dict[str, EnterpriseTruth]]:
    """Every indicator of the report against the truth file's values over the same window."""
    assert report.truth_path is not None
    records = read_truth_file(report.truth_path)
    truth = expected(scenario, records, report.start_ms, report.end_ms)
    out = Comparison()
    for code, want in truth.items():
        got = {i["name"]: i for i in report.enterprises[code]["indicators"]}
        assert set(got) == set(INDICATORS), sorted(got)
        for name in INDICATORS:
            want_value = _round(want.value(name))
            out.check(f"{code} {name}", got[name].get("value"), want_value, NC_TOLERANCE)
        explain = report.explanations[code]
        assert {e["equipment"] for e in explain["equipment"]} == set(want.machines)
        for item in explain["equipment"]:
            _oee(out, f"{code} {item['equipment']}", item["oee"], want.oee(item["equipment"]))
        lines = want.line_oee()
        got_lines = {(b["site"], b["line"]): b for b in explain["lines"].values()}
        assert set(got_lines) == set(lines) and len(got_lines) == len(explain["lines"])
        for (site, line), body in got_lines.items():
            _oee(out, f"{code} line {site}/{line}", body, lines[(site, line)])
    expected_groups = {f"chains/{c.code}" for c in scenario.chains} | {
        f"parks/{p.code}" for p in scenario.parks
    }
    assert expected_groups <= set(report.groups), sorted(report.groups)
    for key, body in report.groups.items():
        members = _members(scenario, key)
        got = {i["name"]: i for i in body["indicators"]}
        for name in INDICATORS:
            mean, pooled, counted = roll_up(truth[m].rate(name) for m in members)
            out.check(f"{key} {name} mean", got[name].get("value"), _round(mean), NC_TOLERANCE)
            out.check(f"{key} {name} pooled", got[name].get("pooled"), _round(pooled),
                      NC_TOLERANCE)  # fmt: skip
            out.check(f"{key} {name} enterprises", got[name].get("enterprises"), counted, 0)
    return out, truth


def _members(scenario: Scenario, key: str) -> list[str]:
    kind, _, code = key.partition("/")
    if kind == "chains":
        chain = next(c for c in scenario.chains if c.code == code)
        return [chain.leader, *(m.enterprise for m in chain.members)]
    if kind == "parks":
        return [e.code for e in scenario.enterprises if e.park == code]
    regions = {p.code: p.region for p in scenario.parks}
    return [e.code for e in scenario.enterprises if (e.region or regions.get(e.park or "")) == code]


def _oee(out: Comparison, what: str, got: dict[str, Any], want: Oee) -> None:
    for factor in ("availability", "performance", "quality", "oee"):
        out.check(f"{what} {factor}", got.get(factor), _round(getattr(want, factor)), OEE_TOLERANCE)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
