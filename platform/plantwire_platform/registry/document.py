"""The registry file: parks, chains, enterprises with their sites, lines, process steps and
equipment, as one TOML document (``docs/registry.md``).

The models validate the whole document before anything is written; every error names the
table and field. A simulator scenario is this format plus behaviour: the simulator reads its
own keys beside these and hands the platform the registry part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from plantwire_bus.state import ControlType
from plantwire_bus.tomlfile import parse_toml, validate
from plantwire_platform.indicators.shift_calendar import parse_shifts
from plantwire_platform.translation import Said, Text

CODE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Codes of every registry entry; also valid as a Sparkplug topic element."""


class RegistryError(ValueError):
    """A registry document that cannot be imported; the message names the field."""


def repeated(values: Sequence[str]) -> tuple[int, int] | None:
    """The first value given twice: where it was first, and where again."""
    first: dict[str, int] = {}
    for n, value in enumerate(values):
        if value in first:
            return first[value], n
        first[value] = n
    return None


def once(said: Text, table: str, field: str, values: Sequence[str]) -> None:
    """Refuse a value of ``field`` that two entries of ``table`` have (a code named twice):
    the problem is at the second entry's field and names the first (``said``, given
    ``value`` and ``other``: the first entry's place)."""
    twice = repeated(values)
    if twice is not None:
        first, again = twice
        other = f"{table}[{first}]"
        raise Said(
            Text(said.key, **said.values, value=values[again], other=other), (table, again, field)
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Equipment(_Model):
    """A piece of production equipment; its code is its Sparkplug device id."""

    code: str = Field(pattern=CODE)
    name: str
    line: str
    control_type: ControlType
    declared_nc: bool
    ideal_cycle_s: float | None = Field(default=None, gt=0, description="for OEE performance")

    @model_validator(mode="after")
    def _check(self) -> Equipment:
        if self.declared_nc and self.control_type is ControlType.MANUAL:
            raise Said(Text("registry.manual_nc", code=self.code))
        return self


class Process(_Model):
    """A process step on a line, performed by one or more pieces of equipment."""

    code: str = Field(pattern=CODE)
    name: str
    is_key: bool = False
    key_reason: str = Field(default="", validate_default=True, description="why it is key")
    equipment: tuple[str, ...] = ()

    @field_validator("key_reason")
    @classmethod
    def _reasoned(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("is_key") and not value.strip():
            raise Said(Text("registry.key_reason", code=info.data.get("code")))
        return value


class Maintenance(_Model):
    """A window of planned maintenance of a line: none of its equipment is planned to produce
    in it (planned downtime, outside planned time)."""

    start: AwareDatetime
    end: AwareDatetime
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> Maintenance:
        if self.end <= self.start:
            raise Said(Text("registry.maintenance", start=self.start.isoformat()))
        return self


class Line(_Model):
    """A production line; its own ``shifts`` and ``workdays`` when they differ from its
    site's, and its planned maintenance windows."""

    code: str = Field(pattern=CODE)
    name: str
    shifts: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,  # TOML has no null
        description="planned production of this line (default: its site's shifts)",
    )
    workdays: tuple[int, ...] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Monday = 0 (default: its site's workdays)",
    )
    maintenance: tuple[Maintenance, ...] = Field(
        default=(), description="planned maintenance windows (planned downtime)"
    )
    processes: tuple[Process, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Line:
        if self.shifts is not None:
            try:
                parse_shifts(self.shifts)
            except Said as exc:
                raise Said(Text("registry.line_shifts", line=self.code, problem=exc.text)) from None
        if self.workdays is not None and any(not 0 <= d <= 6 for d in self.workdays):
            raise Said(Text("registry.line_workdays", line=self.code))
        steps = [p.code for p in self.processes]
        once(Text("registry.process_twice", line=self.code), "processes", "code", steps)
        return self


class Site(_Model):
    """A plant, read by one edge gateway (its Sparkplug edge node id)."""

    code: str = Field(pattern=CODE)
    name: str
    timezone: str = "Asia/Shanghai"
    edge_node: str = Field(pattern=CODE)
    shifts: str = Field(
        default="24h", description="planned production, e.g. '06:00-14:00,14:00-22:00'"
    )
    workdays: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4, 5, 6), description="Monday = 0")
    lines: tuple[Line, ...] = ()
    equipment: tuple[Equipment, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Site:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Said(Text("registry.timezone", site=self.code, zone=self.timezone)) from None
        try:
            parse_shifts(self.shifts)
        except Said as exc:
            raise Said(Text("registry.shifts", site=self.code, problem=exc.text)) from None
        if any(not 0 <= d <= 6 for d in self.workdays):
            raise Said(Text("registry.workdays", site=self.code))
        line_codes = [line.code for line in self.lines]
        once(Text("registry.line_twice", site=self.code), "lines", "code", line_codes)
        lines = set(line_codes)
        codes = [e.code for e in self.equipment]
        once(Text("registry.equipment_twice", site=self.code), "equipment", "code", codes)
        for e in self.equipment:
            if e.line not in lines:
                raise Said(Text("registry.unknown_line", code=e.code, line=e.line))
        for line in self.lines:
            for p in line.processes:
                for code in p.equipment:
                    if code not in codes:
                        raise Said(Text("registry.unknown_equipment", process=p.code, code=code))
        return self


class Enterprise(_Model):
    code: str = Field(pattern=CODE, description="also the Sparkplug group id")
    uscc: str = Field(
        pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$", description="unified social credit code"
    )
    name: str
    region: str = ""
    park: str | None = Field(default=None, description="code of the industrial park it is in")
    since: AwareDatetime | None = Field(
        default=None,
        exclude_if=lambda v: v is None,  # TOML has no null
        description="when the registry starts describing the enterprise (default: as it always"
        " was); windows before it have no indicators",
    )
    sites: tuple[Site, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Enterprise:
        sites = [s.code for s in self.sites]
        once(Text("registry.site_twice", enterprise=self.code), "sites", "code", sites)
        twice = repeated([s.edge_node for s in self.sites])  # one gateway reads one site
        if twice is not None:
            first, again = twice
            node, other = self.sites[again].edge_node, f"sites[{first}]"
            raise Said(
                Text("registry.edge_node_twice", value=node, other=other, site=sites[first]),
                at=("sites", again, "edge_node"),
            )
        return self


class Park(_Model):
    """An industrial park or cluster (a "field")."""

    code: str = Field(pattern=CODE)
    name: str
    region: str = ""


class ChainMember(_Model):
    enterprise: str
    tier: int = Field(default=1, ge=1, le=9)


class Chain(_Model):
    """An industrial chain (a "line") led by a chain-leader enterprise."""

    code: str = Field(pattern=CODE)
    name: str
    leader: str
    members: tuple[ChainMember, ...] = ()


class Registry(_Model):
    """A whole registry document."""

    parks: tuple[Park, ...] = ()
    chains: tuple[Chain, ...] = ()
    enterprises: tuple[Enterprise, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Registry:
        once(Text("registry.park_twice"), "parks", "code", [p.code for p in self.parks])
        once(Text("registry.chain_twice"), "chains", "code", [c.code for c in self.chains])
        codes = [e.code for e in self.enterprises]
        once(Text("registry.enterprise_twice"), "enterprises", "code", codes)
        usccs = [e.uscc for e in self.enterprises]
        once(Text("registry.uscc_twice"), "enterprises", "uscc", usccs)
        parks = {p.code for p in self.parks}
        for e in self.enterprises:
            if e.park is not None and e.park not in parks:
                raise Said(Text("registry.unknown_park", code=e.code, park=e.park))
        for chain in self.chains:
            named = [chain.leader, *(m.enterprise for m in chain.members)]
            for code in named:
                if code not in codes:
                    raise Said(Text("registry.unknown_enterprise", chain=chain.code, code=code))
            if len(set(named)) != len(named):
                raise Said(Text("registry.named_twice", chain=chain.code))
        return self

    def equipment(self) -> list[tuple[Enterprise, Site, Equipment]]:
        return [(e, s, q) for e in self.enterprises for s in e.sites for q in s.equipment]


def parse_registry(text: str, source: str = "<registry>") -> Registry:
    """Parse and validate a registry TOML document."""
    return parse_toml(text, Registry, source, RegistryError)


def registry_from(data: dict[str, Any], source: str = "<registry>") -> Registry:
    """Validate a registry document already read (e.g. a scenario's registry part)."""
    return validate(data, Registry, source, RegistryError)
