"""The simulated factory: every protocol's simulators of a scenario, driven by one clock.

One scheduler merges the steps of all machines, scheduled faults and run-time faults in
simulated-time order (ties by kind, then scenario order) and paces them with a
:class:`~plantwire_sim.clock.SimClock`. The ground truth is recorded in that same order, so a
run with the same scenario, seed, start and ``until_s`` writes the same truth file whatever
the wall-clock timing was. When the scheduler falls behind (too many changes for the speed, or a
busy machine) simulated time slows down: the clock is held at the next change not yet played
and set back to it when it is played late, so that no one stamps a time the machines have not
reached (see :mod:`plantwire_sim.clock`). Likewise, in an accelerated run, the clock runs
only so far past the last read of a machine a gateway is polling (see
:mod:`plantwire_sim.polls`) and past a message of an MQTT device the broker has not taken yet
(see :mod:`plantwire_sim.deliveries`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantwire_bus.mqtt import parse_mqtt_url

from .activity import calendar_of
from .behaviour import MachineBehaviour, Step
from .clock import LATE_S, SimClock
from .deliveries import Deliveries
from .endpoint import Endpoint
from .faults import FaultSpec, check_applicable
from .gateway_config import interval_s, polled_every_ms
from .modbus_server import ModbusMachine
from .mqtt_device import MqttMachine
from .opcua_host import OpcUaHost
from .placement import PROTOCOLS, ModbusAddress, plan
from .polls import POLL_BUDGET, Polls
from .scenario import Enterprise, Machine, Outage, Scenario, Site
from .truth import FaultRecord, TruthRecorder
from .uplink import UplinkRelay

log = logging.getLogger(__name__)

_FAULT_OFF, _STEP, _STORM, _FAULT_ON, _OUTAGE, _REGISTRY = range(6)
YIELD_S = 0.005
"""Longest stretch the scheduler runs without letting other tasks (clients, servers) run."""


@dataclass(eq=False)
class _Player:
    order: int
    enterprise: Enterprise
    site: Site
    machine: Machine
    behaviour: MachineBehaviour
    endpoint: Endpoint
    steps: Iterator[Step] | None = None
    next: Step | None = None


class Factory:
    """The running simulators of a scenario (see :func:`run_factory`)."""

    def __init__(
        self,
        scenario: Scenario,
        truth: TruthRecorder,
        seed: int,
        mqtt_url: str | None,
        until_s: float | None,
    ) -> None:
        self.scenario = scenario
        self.truth = truth
        self.seed = seed
        self.mqtt_url = mqtt_url
        self.until_s = until_s
        self.hosts: list[OpcUaHost] = []
        self.uplinks: dict[str, UplinkRelay] = {}
        """Site code -> the relay of its gateway's broker connection (sites with outages)."""
        self.go = asyncio.Event()
        """Set when simulated time may run (at once, unless the run starts held)."""
        self.players: dict[str, _Player] = {}
        self.t0_ms = 0
        """Simulated start: every machine's initial values carry this timestamp."""
        self.until_ms: int | None = None
        self.clock = SimClock(0)
        self.startup_s = 0.0
        """Wall time it took to get every simulator serving."""
        self.finished = asyncio.Event()
        """Set when the scheduler has played everything up to ``until_s``."""
        self.lag_s = 0.0
        """How far the scheduler was behind simulated time at its worst (wall seconds)."""
        self._heap: list[tuple[int, int, int, int, int, Any]] = []
        self._count = itertools.count()
        self._last_ms = 0
        self._waiter: asyncio.Future[None] | None = None
        self._failures: dict[str, BaseException] = {}
        self.polls = Polls(lambda: self.clock.now_ms(), self._polled)
        self.deliveries = Deliveries(self._delivered)

    # -- where things are ----------------------------------------------------------------
    @property
    def machines(self) -> dict[str, Endpoint]:
        """Machine code -> its endpoint (OPC UA, Modbus or MQTT)."""
        return {code: p.endpoint for code, p in self.players.items()}

    @property
    def endpoints(self) -> dict[str, str]:
        """Machine code -> OPC UA endpoint URL."""
        return {m.code: h.endpoint for h in self.hosts for m in h.machines}

    @property
    def modbus(self) -> dict[str, ModbusAddress]:
        """Machine code -> Modbus TCP address."""
        return {
            code: ModbusAddress(e.host, e.port, e.unit_id)
            for code, p in self.players.items()
            if isinstance(e := p.endpoint, ModbusMachine)
        }

    @property
    def mqtt_topics(self) -> dict[str, str]:
        """Machine code -> topic its device publishes to (on ``mqtt_url``)."""
        return {
            code: e.topic
            for code, p in self.players.items()
            if isinstance(e := p.endpoint, MqttMachine)
        }

    def failures(self) -> dict[str, BaseException]:
        """Machines whose endpoint failed (they stopped being driven), with the exception."""
        return dict(self._failures)

    def gateway_config(
        self,
        enterprise: Enterprise,
        site: Site,
        mqtt_url: str,
        primary_host_id: str | None = "plantwire",
        protocols: frozenset[str] = frozenset({"opcua"}),
        metrics: str = "core",
    ) -> dict[str, Any]:
        """The edge gateway config reading this factory's machines of ``site`` (run the
        gateway with ``self.clock``: it polls the Modbus machines in that clock's time)."""
        from .gateway_config import gateway_config

        return gateway_config(
            enterprise,
            site,
            self.endpoints,
            mqtt_url,
            primary_host_id,
            protocols=protocols,
            modbus=self.modbus,
            mqtt_topics=self.mqtt_topics,
            device_broker_url=self.mqtt_url,
            metrics=metrics,
        )

    # -- faults ----------------------------------------------------------------------------
    async def fault(
        self, machine: str, kind: str, seconds: float, rate_per_s: float = 10.0
    ) -> FaultRecord:
        """Inject a fault now (simulated time) lasting ``seconds`` simulated seconds."""
        player = self.players.get(machine)
        if player is None:
            raise ValueError(f"unknown simulated machine {machine!r}")
        check_applicable(kind, player.machine.protocol, machine)
        if not seconds > 0 or not rate_per_s > 0:
            raise ValueError("seconds and rate_per_s must be > 0")
        if self.finished.is_set():
            raise ValueError("the run is over (its duration was reached)")
        start = max(self.clock.now_ms(), self._last_ms)
        end = start + max(1, round(seconds * 1000))
        self._push(start, _FAULT_ON, player.order, (player, kind, end, "control", rate_per_s, None))
        self._wake()
        return FaultRecord(machine, kind, start, end, "control")

    def _schedule_run_events(self) -> None:
        """The scenario's uplink outages and registry changes, at their times."""
        t0 = self.t0_ms
        for outage in self.scenario.outages:
            relay = self.uplinks.get(outage.site)
            if relay is not None:
                self._schedule_outage(relay, outage, t0)
        for change in self.scenario.registry_changes:
            at = self.scenario.change_ms(change, t0)
            if at is not None:
                self._push(at, _REGISTRY, -1, change)

    def _schedule_outage(self, relay: UplinkRelay, outage: Outage, after_ms: int) -> None:
        zone = self.scenario.timezone(site=outage.site)
        occurrence = outage.next_occurrence(self.t0_ms, after_ms, zone)
        if occurrence is not None:
            start, end = occurrence
            self._push(start, _OUTAGE, -1, (relay, outage, end, True))

    def _schedule(self, player: _Player, spec: FaultSpec, after_ms: int) -> None:
        occurrence = spec.next_occurrence(self.t0_ms, after_ms, player.site.timezone)
        if occurrence is not None:
            start, end = occurrence
            self._push(
                start,
                _FAULT_ON,
                player.order,
                (player, spec.kind, end, "scenario", spec.rate_per_s, spec),
            )

    # -- the scheduler ---------------------------------------------------------------------
    def _push(self, ts_ms: int, kind: int, order: int, payload: Any) -> None:
        heapq.heappush(self._heap, (ts_ms, kind, order, next(self._count), kind, payload))

    def _polled(self, sim_ms: int) -> None:
        """A gateway read a polled machine's state at ``sim_ms``: a clock held for it runs on
        from there (slowed down, not jumping), and the scheduler looks again."""
        if self.clock.speed > 1:
            self.clock.rebase(sim_ms)
        self._wake()

    def _delivered(self) -> None:
        """The broker took a device's message: a clock held for it runs on from where it was
        held (slowed down, not jumping), and the scheduler looks again."""
        line = self.clock.line
        if self.clock.speed > 1 and line.free_at(time.time()) > line.hold_ms:
            self.clock.rebase(line.hold_ms)
        self._wake()

    def _limit(self, wall: float) -> tuple[int, float] | None:
        """(simulated time not to pass, wall time until which that holds) for the gateways
        polling and the broker taking the devices' messages, or None."""
        if self.clock.speed <= 1:
            return None
        limits = [x for x in (self.polls.limit(wall), self.deliveries.limit(wall)) if x]
        return min(limits) if limits else None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        yielded = time.perf_counter()
        clock = self.clock
        if not self.go.is_set():  # held at the start until told to go
            await self.go.wait()
            clock.rebase(self.t0_ms)
        while heap:
            ts = heap[0][0]
            polled = self._limit(time.time())
            if polled is not None and polled[0] < ts:
                # a gateway polling a machine is behind, or the broker has not taken a device's
                # message: simulated time is held where its next read is due, or a publishing
                # interval after the message, until that comes (or the gateway is gone)
                clock.hold(polled[0])
                self.truth.flush()
                self._waiter = loop.create_future()
                handle = loop.call_later(max(0.0, polled[1] - time.time()), self._wake)
                await self._waiter
                handle.cancel()
                continue
            clock.hold(ts)  # nobody sees simulated time pass a change not yet played
            if self.until_ms is not None and ts > self.until_ms:
                break
            delay = clock.delay_s(ts)
            if delay > 0:
                self.truth.flush()
                self._waiter = loop.create_future()
                handle = loop.call_later(delay, self._wake)
                await self._waiter
                handle.cancel()
                continue
            self.lag_s = max(self.lag_s, -delay)
            if -delay > LATE_S and clock.speed > 1:
                clock.rebase(ts)  # slow down rather than rush through what is overdue
            ts, _, _, _, kind, payload = heapq.heappop(heap)
            self._last_ms = ts
            await self._dispatch(ts, kind, payload)
            if time.perf_counter() - yielded > YIELD_S:  # catching up: let the rest run too
                await asyncio.sleep(0)
                yielded = time.perf_counter()
        if not heap:
            clock.hold(None)
        self.truth.flush()
        self.finished.set()

    async def _dispatch(self, ts: int, kind: int, payload: Any) -> None:
        if kind == _STEP:
            await self._play(payload)
            return
        if kind == _OUTAGE:
            relay, outage, end, on = payload
            if on:
                self.truth.record_outage(outage.site, outage.kind, ts, end)
                self._push(end, _OUTAGE, -1, (relay, outage, end, False))
                self._schedule_outage(relay, outage, ts + 1)
                relay.cut()
            else:
                relay.restore()
            return
        if kind == _REGISTRY:
            self.truth.record_registry(payload.machine, ts, payload.declared_nc)
            return
        player, fault, end, origin, rate, spec = payload
        endpoint = player.endpoint
        try:
            if kind == _FAULT_ON:
                self.truth.record_fault(player.machine.code, fault, ts, end, origin)
                self._push(end, _FAULT_OFF, player.order, (player, fault, end, origin, rate, spec))
                if spec is not None:
                    self._schedule(player, spec, ts + 1)
                if endpoint.faults.begin(fault, ts):
                    await endpoint.fault_on(fault, ts)
                if fault == "alarm_storm":
                    self._push(ts, _STORM, player.order, (player, True, end, origin, rate, spec))
            elif kind == _FAULT_OFF:
                if endpoint.faults.end(fault):
                    await endpoint.fault_off(fault, ts)
            elif kind == _STORM and "alarm_storm" in endpoint.faults:
                await endpoint.storm(ts, fault)
                following = ts + max(1, round(1000 / rate))
                if following < end:
                    self._push(
                        following,
                        _STORM,
                        player.order,
                        (player, not fault, end, origin, rate, spec),
                    )
        except Exception as exc:  # one machine's failure must not stop the rest
            log.exception("simulated machine %s: fault handling failed", player.machine.code)
            self._failures.setdefault(player.machine.code, exc)

    async def _play(self, player: _Player) -> None:
        step = player.next
        assert step is not None and player.steps is not None
        code = player.machine.code
        if step.made is not None:
            self.truth.record_made(code, step.ts_ms, *step.made)
        if step.segment is not None:
            s = step.segment
            self.truth.record_state(code, step.ts_ms, s.mode, s.execution, s.cause)
        for tag, value in step.writes:
            self.truth.record_value(code, tag, value, step.ts_ms)
        try:
            await player.endpoint.apply(step)
        except Exception as exc:  # one machine's failure must not stop the rest
            log.exception("simulated machine %s stopped", code)
            self._failures.setdefault(code, exc)
            return
        player.next = next(player.steps)
        self._push(player.next.ts_ms, _STEP, player.order, player)


@asynccontextmanager
async def run_factory(
    scenario: Scenario,
    host: str = "127.0.0.1",
    base_port: int = 0,
    truth: TruthRecorder | None = None,
    *,
    seed: int | None = None,
    protocols: frozenset[str] = PROTOCOLS,
    mqtt_url: str | None = None,
    topic_prefix: str = "plant",
    speed: float = 1.0,
    start_ms: int | None = None,
    until_s: float | None = None,
    layout: str | None = None,
    catch_up: bool = False,
    clock_file: Path | None = None,
    held: bool = False,
) -> AsyncIterator[Factory]:
    """Serve every simulated machine of ``scenario`` speaking one of ``protocols``.

    ``start_ms`` is the simulated start (default: now, and simulated time then equals wall
    time at ``speed`` 1); ``until_s`` stops the scheduler after that many simulated seconds
    (``factory.finished`` is set; the servers keep serving until the block exits). MQTT
    devices publish to ``mqtt_url`` (required when the scenario has any). With ``catch_up``
    a ``start_ms`` in the past is replayed at ``speed`` until simulated time reaches the wall
    clock, which it then follows (see :class:`~plantwire_sim.clock.SimClock`). With
    ``clock_file`` the clock's time line is published there for gateways in other processes
    (``plantwire edge run --clock-file``). ``layout``
    overrides the scenario's OPC UA layout. A site with uplink outages gets a relay of its
    gateway's broker connection to ``mqtt_url`` (``factory.uplinks``). With ``held`` simulated
    time stays at ``start_ms`` until ``factory.go`` is set (gateways can connect and be born
    first). A machine whose endpoint failed is re-raised as RuntimeError on exit.
    """
    started = time.perf_counter()
    seed = scenario.seed if seed is None else seed
    truth = truth if truth is not None else TruthRecorder()
    placement = plan(scenario, protocols, host, base_port, layout, topic_prefix)
    if placement.topics and mqtt_url is None:
        raise ValueError(f"scenario {scenario.name!r} has MQTT devices: give an MQTT broker URL")
    address = parse_mqtt_url(mqtt_url) if mqtt_url is not None else None
    factory = Factory(scenario, truth, seed, mqtt_url, until_s)
    hosts = {h.path: OpcUaHost(host, h.port, h.path) for h in placement.opcua}
    path_of = {code: h.path for h in placement.opcua for code in h.machines}
    factory.hosts = list(hosts.values())
    for order, (e, s, m) in enumerate(placement.machines):
        behaviour = MachineBehaviour(m, seed, calendar_of(s, m.line))
        endpoint: Endpoint
        if m.protocol == "opcua":
            endpoint = hosts[path_of[m.code]].add(m, behaviour.profile)
        elif m.protocol == "modbus":
            endpoint = modbus = ModbusMachine(
                m, behaviour.profile, host, placement.modbus_ports[m.code]
            )
            budget_ms = POLL_BUDGET * polled_every_ms(m, speed)
            modbus.on_state_read = factory.polls.watch(m.code, budget_ms)
        else:
            assert address is not None
            endpoint = mqtt = MqttMachine(m, behaviour.profile, address, placement.topics[m.code])
            mqtt.on_publish = factory.deliveries.watch(round(interval_s(m) * 1000))
        factory.players[m.code] = _Player(order, e, s, m, behaviour, endpoint)
    others = [p.endpoint for p in factory.players.values() if p.endpoint.protocol != "opcua"]
    task: asyncio.Task[None] | None = None
    try:
        for h in factory.hosts:
            await h.init()
        t0 = start_ms if start_ms is not None else round(time.time() * 1000)
        factory.t0_ms = t0
        factory.until_ms = None if until_s is None else t0 + round(until_s * 1000)
        for player in factory.players.values():
            player.steps = player.behaviour.steps_from(t0)
            player.next = next(player.steps)
            await factory._play(player)
        for h in factory.hosts:
            await h.start()
        await asyncio.gather(*(e.start() for e in others))
        outaged = {o.site for o in scenario.outages}
        if outaged and address is None:
            raise ValueError(f"scenario {scenario.name!r} cuts uplinks: give an MQTT broker URL")
        served = {s.code for _, s, _ in placement.machines}
        for site in sorted(outaged & served):
            assert address is not None
            factory.uplinks[site] = relay = UplinkRelay(site, host, address.host, address.port)
            await relay.start()
        wall0 = t0 / 1000 if start_ms is None else time.time()
        factory.clock = SimClock(t0, speed, wall0, catch_up)
        if held:
            factory.clock.hold(t0)
        else:
            factory.go.set()
        if clock_file is not None:
            factory.clock.publish(clock_file)
        for spec in scenario.faults:
            if spec.machine in factory.players:
                factory._schedule(factory.players[spec.machine], spec, t0)
        factory._schedule_run_events()
        factory.startup_s = time.perf_counter() - started
        log.info("%d simulated machines up in %.2f s", len(factory.players), factory.startup_s)
        task = asyncio.create_task(factory._run(), name="plantwire-sim scheduler")
        yield factory
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stops = [
            *(h.stop() for h in factory.hosts),
            *(e.stop() for e in others),
            *(r.stop() for r in factory.uplinks.values()),
        ]
        for result in await asyncio.gather(*stops, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("stopping a simulator failed: %r", result)
        truth.flush()
        factory.clock.close()
    failures = factory.failures()
    if failures:
        code, exc = next(iter(failures.items()))
        raise RuntimeError(f"simulated machine {code} stopped: {exc!r}") from exc
