"""Scenario files: the registry of a simulated factory and how each machine behaves.

A scenario is a registry document (the platform's format, ``docs/registry.md``: parks, chains,
enterprises, sites, lines, processes, equipment) plus behaviour: top-level ``seed``,
``programs``, ``faults``, ``outages`` (a site's uplink cut), ``registry_changes`` (a machine
re-declared during the run) and ``[simulation]``, site ``breaks`` and ``setup_minutes``, and per
piece of equipment its ``protocol``, ``profile``, ``program``, ``params`` and ``behaviour``.
Faults, outages and registry changes start at simulated seconds or at local calendar times of
their site (:mod:`plantwire_sim.schedule`).
:meth:`Scenario.registry` gives the registry part, which the platform imports.

Conveniences resolved while loading (the models hold the result): a machine table with
``count = N`` stands for N machines ``{code}-01`` .. ``{code}-N`` (names get `` #i``) and a
process naming ``{code}`` in ``equipment`` means all of them; ``program = "name"`` refers to a
top-level ``[programs]`` entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from plantwire_bus.state import ControlType, Execution, Mode
from plantwire_bus.tomlfile import parse_toml

from .faults import FaultSpec, check_applicable
from .params import (
    DEFAULT_PROFILE,
    PROFILE_PROTOCOLS,
    Behaviour,
    Profile,
    ProfileParams,
    Protocol,
)
from .schedule import Schedule, Start
from .shifts import parse_spans

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
_CODE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # also a valid Sparkplug topic element


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segment(_Model):
    """One step of a machine's repeating behaviour program, in canonical terms."""

    mode: Mode
    execution: Execution
    seconds: float = Field(gt=0)


class Machine(_Model):
    """A piece of equipment; simulated when ``protocol`` is not ``none``.

    ``profile`` defaults from the protocol (opcua: cnc, modbus: legacy, mqtt: station);
    ``params`` holds the profile's settings and ``behaviour`` the events laid over the
    program (see :mod:`plantwire_sim.params`).
    """

    code: str = Field(pattern=_CODE)
    name: str
    line: str
    control_type: ControlType
    declared_nc: bool
    protocol: Protocol = "opcua"
    profile: Profile | None = None
    spindle_rpm: float = Field(default=0.0, ge=0)
    ideal_cycle_s: float | None = Field(default=None, gt=0, description="for OEE performance")
    program: tuple[Segment, ...] = ()
    params: ProfileParams | None = None
    behaviour: Behaviour = Behaviour()

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        profile = data.get("profile") or DEFAULT_PROFILE.get(str(data.get("protocol", "opcua")))
        params = data.get("params")
        if profile is None or not (params is None or isinstance(params, dict)):
            return data
        return {**data, "profile": profile, "params": {"profile": profile, **(params or {})}}

    @model_validator(mode="after")
    def _check(self) -> Machine:
        if self.declared_nc and self.control_type is ControlType.MANUAL:
            raise ValueError(f"machine {self.code}: a MANUAL machine cannot be declared NC")
        if self.protocol != "none" and not self.program:
            raise ValueError(f"machine {self.code}: a simulated machine needs a program")
        if self.profile is not None and self.params is not None:
            if self.params.profile != self.profile:
                raise ValueError(
                    f"machine {self.code}: params are for profile "
                    f"{self.params.profile!r}, not {self.profile!r}"
                )
            if self.protocol != "none" and self.protocol not in PROFILE_PROTOCOLS[self.profile]:
                allowed = ", ".join(sorted(PROFILE_PROTOCOLS[self.profile]))
                raise ValueError(
                    f"machine {self.code}: profile {self.profile} is simulated "
                    f"over {allowed}, not {self.protocol}"
                )
        return self


class Process(_Model):
    """A process step on a line, performed by one or more machines."""

    code: str = Field(pattern=_CODE)
    name: str
    is_key: bool = False
    key_reason: str = ""
    equipment: tuple[str, ...] = ()


class Maintenance(_Model):
    """A window of planned maintenance of a line (planned downtime): its machines stand
    still in it (``SERVICE`` mode, idle) and nothing of it is planned time."""

    start: AwareDatetime
    end: AwareDatetime
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> Maintenance:
        if self.end <= self.start:
            raise ValueError(f"maintenance from {self.start.isoformat()}: end is not after start")
        return self


class Line(_Model):
    """A line; ``shifts`` and ``workdays`` of its own (default: its site's) and its planned
    maintenance windows."""

    code: str = Field(pattern=_CODE)
    name: str
    shifts: str | None = Field(
        default=None, description="planned production of this line (default: its site's)"
    )
    workdays: tuple[int, ...] | None = Field(
        default=None, description="Monday = 0 (default: its site's workdays)"
    )
    maintenance: tuple[Maintenance, ...] = Field(
        default=(), description="planned maintenance windows (planned downtime)"
    )
    processes: tuple[Process, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Line:
        if self.shifts is not None:
            try:
                parse_spans(self.shifts)
            except ValueError as exc:
                raise ValueError(f"line {self.code}: shifts: {exc}") from None
        if self.workdays is not None and any(not 0 <= d <= 6 for d in self.workdays):
            raise ValueError(f"line {self.code}: workdays are 0 (Monday) .. 6 (Sunday)")
        return self


class Site(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    code: str = Field(pattern=_CODE)
    name: str
    timezone: str = "Asia/Shanghai"
    edge_node: str = Field(pattern=_CODE)
    shifts: str = Field(
        default="24h", description="planned production, e.g. '06:00-14:00,14:00-22:00'"
    )
    workdays: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4, 5, 6), description="Monday = 0")
    breaks: str = Field(default="", description="simulated breaks inside shifts, '12:00-12:30'")
    setup_minutes: float = Field(default=0.0, ge=0, description="simulated setup per shift")
    lines: tuple[Line, ...] = ()
    machines: tuple[Machine, ...] = Field(default=(), alias="equipment")

    @model_validator(mode="before")
    @classmethod
    def _expand_counts(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("equipment"), list | tuple):
            return data
        machines, groups = _expand_machines(data["equipment"])
        if not groups:
            return data
        lines = [_expand_line(line, groups) for line in data.get("lines", ())]
        return {**data, "equipment": machines, "lines": lines}

    @model_validator(mode="after")
    def _check(self) -> Site:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"site {self.code}: unknown time zone {self.timezone!r}") from None
        for field, spec in (("shifts", self.shifts), ("breaks", self.breaks)):
            try:
                parse_spans(spec)
            except ValueError as exc:
                raise ValueError(f"site {self.code}: {field}: {exc}") from None
        if any(not 0 <= d <= 6 for d in self.workdays):
            raise ValueError(f"site {self.code}: workdays are 0 (Monday) .. 6 (Sunday)")
        line_codes = {line.code for line in self.lines}
        machine_codes = [m.code for m in self.machines]
        if len(set(machine_codes)) != len(machine_codes):
            raise ValueError(f"site {self.code}: machine codes must be unique")
        for m in self.machines:
            if m.line not in line_codes:
                raise ValueError(f"machine {m.code}: unknown line {m.line!r}")
        for line in self.lines:
            for p in line.processes:
                for e in p.equipment:
                    if e not in machine_codes:
                        raise ValueError(f"process {p.code}: unknown equipment {e!r}")
        return self


class Enterprise(_Model):
    code: str = Field(pattern=_CODE)
    uscc: str = Field(
        pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$", description="unified social credit code"
    )
    name: str
    region: str = ""
    park: str | None = Field(default=None, description="code of the industrial park it is in")
    since: AwareDatetime | None = Field(
        default=None, description="when the registry starts describing it (default: always)"
    )
    sites: tuple[Site, ...] = ()


class Park(_Model):
    """An industrial park or cluster (a "field")."""

    code: str = Field(pattern=_CODE)
    name: str
    region: str = ""


class ChainMember(_Model):
    enterprise: str
    tier: int = Field(default=1, ge=1, le=9)


class Chain(_Model):
    """An industrial chain (a "line") led by a chain-leader enterprise."""

    code: str = Field(pattern=_CODE)
    name: str
    leader: str
    members: tuple[ChainMember, ...] = ()


class Simulation(_Model):
    """How the simulators serve the scenario."""

    opcua_layout: Literal["machine", "site", "fleet"] = Field(
        default="machine",
        description="one OPC UA server per machine, per site, or one for the whole fleet",
    )


class Outage(Schedule):
    """A site's gateway loses its uplink (its broker connection) over a stretch of the run:
    the simulator relays the gateway's MQTT connection (see :mod:`plantwire_sim.uplink`) and
    cuts it, refusing new connections until the outage ends. The gateway keeps reading its
    machines and forwards what it stored once connected again. When: ``at_s`` simulated
    seconds after the start or ``at`` a local time of the site (:mod:`plantwire_sim.schedule`).
    """

    site: str
    kind: Literal["uplink"] = "uplink"


class RegistryChange(Start):
    """The registry changes during the run: ``machine`` is re-declared NC (or not) from
    ``at_s`` simulated seconds after the run's start or ``at`` a local time of its site
    (:mod:`plantwire_sim.schedule`: a daily time is its first one at or after the start); the
    platform is told at that time, effective then (see :meth:`Scenario.registry`)."""

    machine: str
    declared_nc: bool


class Scenario(_Model):
    name: str
    description: str = ""
    seed: int = 0
    parks: tuple[Park, ...] = ()
    chains: tuple[Chain, ...] = ()
    programs: dict[str, tuple[Segment, ...]] = Field(default_factory=dict)
    enterprises: tuple[Enterprise, ...]
    faults: tuple[FaultSpec, ...] = ()
    outages: tuple[Outage, ...] = ()
    registry_changes: tuple[RegistryChange, ...] = ()
    simulation: Simulation = Simulation()

    @model_validator(mode="before")
    @classmethod
    def _resolve_programs(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("programs", {}), dict):
            return data
        programs = data.get("programs", {})
        enterprises = [_with_programs(e, programs) for e in data.get("enterprises", ())]
        return {**data, "enterprises": enterprises}

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        codes = [e.code for e in self.enterprises]
        if len(set(codes)) != len(codes):
            raise ValueError("enterprise codes must be unique")
        parks = {p.code for p in self.parks}
        for e in self.enterprises:
            if e.park is not None and e.park not in parks:
                raise ValueError(f"enterprise {e.code}: unknown park {e.park!r}")
        for chain in self.chains:
            named = [chain.leader, *(m.enterprise for m in chain.members)]
            for code in named:
                if code not in codes:
                    raise ValueError(f"chain {chain.code}: unknown enterprise {code!r}")
            if len(set(named)) != len(named):
                raise ValueError(f"chain {chain.code}: an enterprise is named twice")
        seen: set[str] = set()
        for _, _, m in self.machines():
            if m.protocol != "none" and m.code in seen:
                raise ValueError(
                    f"machine {m.code}: simulated machine codes must be unique "
                    "across the scenario (simulators address machines by code)"
                )
            seen.add(m.code)
        protocols = {m.code: m.protocol for _, _, m in self.machines()}
        for fault in self.faults:
            if fault.machine not in protocols:
                raise ValueError(f"fault {fault.kind}: unknown machine {fault.machine!r}")
            check_applicable(fault.kind, protocols[fault.machine], fault.machine)
        sites = {s.code: s for e in self.enterprises for s in e.sites}
        for outage in self.outages:
            site = sites.get(outage.site)
            if site is None:
                raise ValueError(f"outage: unknown site {outage.site!r}")
            if not any(m.protocol != "none" for m in site.machines):
                raise ValueError(f"outage: site {outage.site} has no gateway (nothing simulated)")
        machines = {m.code: m for _, _, m in self.machines()}
        for change in self.registry_changes:
            machine = machines.get(change.machine)
            if machine is None:
                raise ValueError(f"registry change: unknown machine {change.machine!r}")
            if change.declared_nc and machine.control_type is ControlType.MANUAL:
                raise ValueError(
                    f"registry change: a MANUAL machine ({change.machine}) cannot be declared NC"
                )
        return self

    def machines(self) -> list[tuple[Enterprise, Site, Machine]]:
        return [(e, s, m) for e in self.enterprises for s in e.sites for m in s.machines]

    def timezone(self, *, site: str | None = None, machine: str | None = None) -> str:
        """The time zone of a site, or of the site of a machine (a schedule's ``at``)."""
        for _, s, m in self.machines():
            if s.code == site or m.code == machine:
                return s.timezone
        for e in self.enterprises:
            for s in e.sites:
                if s.code == site:
                    return s.timezone
        raise KeyError(site or machine)

    def change_ms(self, change: RegistryChange, t0_ms: int) -> int | None:
        """Epoch ms at which ``change`` is made in a run started at ``t0_ms`` (its ``at`` in
        its machine's site's time zone); None if it is not within 15 days of the start."""
        return change.first_start(t0_ms, self.timezone(machine=change.machine))

    def registry(self, after_s: float | None = None, t0_ms: int = 0) -> dict[str, Any]:
        """The registry part of the scenario: a registry document (``docs/registry.md``) as
        plain data (unset optional keys left out, as TOML has no null), with counts expanded;
        behaviour and simulation keys left out. ``after_s``: as it is that many simulated
        seconds into a run started at ``t0_ms``, with the ``registry_changes`` made by then
        (default: none; ``t0_ms`` matters only for changes given ``at`` a local time)."""
        equipment: Any = {"__all__": set(_SIMULATION_ONLY["equipment"])}
        site = {"__all__": {**dict.fromkeys(_SIMULATION_ONLY["site"], True), "machines": equipment}}
        document = self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            include={"parks", "chains", "enterprises"},
            exclude={"enterprises": {"__all__": {"sites": site}}},
        )
        made = []
        if after_s is not None:
            made = [
                (at, i, c)
                for i, c in enumerate(self.registry_changes)
                if (at := self.change_ms(c, t0_ms)) is not None
                and at <= t0_ms + round(after_s * 1000)
            ]
        declared = {c.machine: c.declared_nc for _, _, c in sorted(made)}
        for e in document["enterprises"]:
            for s in e.get("sites", ()):
                for m in s.get("equipment", ()):
                    m["declared_nc"] = declared.get(m["code"], m["declared_nc"])
        return document


_SIMULATION_ONLY = {
    "site": ("breaks", "setup_minutes"),
    "equipment": ("protocol", "profile", "spindle_rpm", "program", "params", "behaviour"),
}
"""Keys a scenario adds to the registry's sites and equipment."""


def _expand_machines(raw: list[Any] | tuple[Any, ...]) -> tuple[list[Any], dict[str, list[str]]]:
    machines: list[Any] = []
    groups: dict[str, list[str]] = {}
    for entry in raw:
        if not isinstance(entry, dict) or "count" not in entry:
            machines.append(entry)
            continue
        count, code = entry["count"], str(entry.get("code", ""))
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 999:
            raise ValueError(f"machine {code}: count must be a whole number 1..999")
        width = max(2, len(str(count)))
        base = {k: v for k, v in entry.items() if k != "count"}
        members = [f"{code}-{i:0{width}d}" for i in range(1, count + 1)]
        machines += [
            {**base, "code": member, "name": f"{entry.get('name', code)} #{i}"}
            for i, member in enumerate(members, 1)
        ]
        groups[code] = members
    return machines, groups


def _expand_line(line: Any, groups: dict[str, list[str]]) -> Any:
    if not isinstance(line, dict) or not isinstance(line.get("processes"), list | tuple):
        return line
    processes = []
    for p in line["processes"]:
        if isinstance(p, dict) and isinstance(p.get("equipment"), list | tuple):
            p = {**p, "equipment": [c for e in p["equipment"] for c in groups.get(e, [e])]}
        processes.append(p)
    return {**line, "processes": processes}


def _with_programs(enterprise: Any, programs: dict[str, Any]) -> Any:
    if not isinstance(enterprise, dict) or not isinstance(enterprise.get("sites"), list | tuple):
        return enterprise
    sites = []
    for site in enterprise["sites"]:
        if isinstance(site, dict) and isinstance(site.get("equipment"), list | tuple):
            machines = []
            for m in site["equipment"]:
                name = m.get("program") if isinstance(m, dict) else None
                if isinstance(name, str):
                    if name not in programs:
                        raise ValueError(
                            f"machine {m.get('code')}: unknown program {name!r} "
                            f"(programs: {', '.join(programs) or 'none'})"
                        )
                    m = {**m, "program": programs[name]}
                machines.append(m)
            site = {**site, "equipment": machines}
        sites.append(site)
    return {**enterprise, "sites": sites}


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with plantwire."""
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from exc
        source = str(path)
    else:
        resource = SCENARIOS_DIR / f"{name_or_path}.toml"
        if not resource.is_file():
            known = ", ".join(builtin_scenarios())
            raise ScenarioError(f"unknown scenario {name_or_path!r} (built-in: {known})")
        text = resource.read_text(encoding="utf-8")
        source = f"built-in scenario {name_or_path!r}"
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    return parse_toml(text, Scenario, source, ScenarioError)
