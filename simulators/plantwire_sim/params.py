"""Per-machine simulation parameters: the behaviour events and each profile's own settings.

A machine's ``profile`` says what kind of equipment it is and therefore which native
vocabulary it speaks (see :mod:`plantwire_sim.native`); ``params`` holds that profile's
settings and ``behaviour`` the shop-floor events laid over its program. Durations are in
simulated seconds.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Profile = Literal["cnc", "injection", "legacy", "station", "energy"]
Protocol = Literal["opcua", "modbus", "mqtt", "none"]

PROFILE_PROTOCOLS: dict[str, frozenset[str]] = {
    "cnc": frozenset({"opcua"}),
    "injection": frozenset({"opcua"}),
    "legacy": frozenset({"modbus"}),
    "station": frozenset({"mqtt"}),
    "energy": frozenset({"mqtt"}),
}
"""The protocols a profile's native vocabulary exists for (``none`` fits every profile)."""

DEFAULT_PROFILE: dict[str, str] = {"opcua": "cnc", "modbus": "legacy", "mqtt": "station"}
"""The profile a machine gets when its table names only a protocol."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Behaviour(_Model):
    """Events laid over a machine's program, each drawn from the machine's seeded streams.

    An ``*_every_s`` value is the mean EXECUTING program time between two such events
    (exponentially distributed); ``None`` switches the event off. Micro-stops, feed holds and
    alarms interrupt the running segment with PAUSED / PAUSED / FAULT; MDI and manual
    interventions with MDI / MANUAL EXECUTING. The segment resumes afterwards with the time it
    had left, so the program's own share of AUTO in EXECUTING time is unchanged by pauses and
    alarms but diluted by MDI and manual interventions.
    """

    sample_s: float = Field(default=1.0, gt=0, description="analog re-sampling interval")
    publish_every_s: float = Field(
        default=10.0,
        gt=0,
        description="an MQTT device republishes its document at least this often (its "
        "heartbeat: a gateway takes three missed ones as a silent device)",
    )
    micro_stop_every_s: float | None = Field(default=None, gt=0)
    micro_stop_s: float = Field(default=15.0, gt=0)
    feed_hold_every_s: float | None = Field(default=None, gt=0)
    feed_hold_s: float = Field(default=90.0, gt=0)
    alarm_every_s: float | None = Field(default=None, gt=0)
    repair_s: float = Field(default=600.0, gt=0)
    mdi_every_s: float | None = Field(default=None, gt=0)
    mdi_s: float = Field(default=60.0, gt=0)
    manual_every_s: float | None = Field(default=None, gt=0)
    manual_s: float = Field(default=120.0, gt=0)
    scrap_rate: float = Field(default=0.0, ge=0, le=1, description="share of parts scrapped")
    parts_per_cycle: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="parts completed at the end of every EXECUTING program segment (a "
        "multi-cavity mould, a fixture holding several parts); every counter counts them",
    )
    scrap_per_cycle: int | None = Field(
        default=None,
        ge=0,
        description="fixed counts: this many of each cycle's parts are scrap, the rest good "
        "(instead of the drawn scrap_rate)",
    )
    phase_s: float | None = Field(
        default=None,
        ge=0,
        description="where in its program the machine is at the run's start (simulated "
        "seconds into the cycle); default: a phase drawn from the seed",
    )
    clock_offset_s: float = Field(
        default=0.0,
        description="how far the machine's clock is ahead of true time (negative: behind) in "
        "the timestamps it sends (OPC UA source timestamps, an MQTT device's own)",
    )
    clock_drift_s_per_min: float = Field(
        default=0.0,
        ge=-30,
        le=30,
        description="...and how much further it runs ahead per minute of the run",
    )

    @model_validator(mode="after")
    def _check_counts(self) -> Behaviour:
        if self.scrap_per_cycle is not None:
            if self.scrap_per_cycle > self.parts_per_cycle:
                raise ValueError(
                    f"scrap_per_cycle ({self.scrap_per_cycle}) is more than parts_per_cycle "
                    f"({self.parts_per_cycle})"
                )
            if self.scrap_rate:
                raise ValueError("give scrap_per_cycle (fixed counts) or scrap_rate, not both")
        return self


class CncParams(_Model):
    """CNC machine tool (OPC 40501-1 / OPC 40502 style variables)."""

    profile: Literal["cnc"] = "cnc"
    program_name: str = "O1000"
    spindle_load_pct: float = Field(default=45.0, ge=0, le=150)
    feed_rate_mm_min: float = Field(default=1200.0, ge=0)
    feed_override_pct: float = Field(default=100.0, ge=0, le=200)
    power_kw: float = Field(default=7.5, ge=0, description="while cutting")
    travel_mm: tuple[float, float, float] = (600.0, 400.0, 350.0)
    sensors: int = Field(
        default=0,
        ge=0,
        le=64,
        description="extra condition-monitoring "
        "channels Sensor01..NN, re-sampled like the other analog values",
    )


class InjectionParams(_Model):
    """Injection moulding machine on a PLC line (EUROMAP 83 style variables)."""

    profile: Literal["injection"] = "injection"
    job_name: str = "JOB-0001"
    mould_temperature_c: float = 60.0
    barrel_temperature_c: float = 230.0
    injection_pressure_bar: float = Field(default=900.0, ge=0)
    power_kw: float = Field(default=22.0, ge=0)


class LegacyParams(_Model):
    """Legacy machine behind Modbus TCP (fixed register map, see :mod:`plantwire_sim.legacy`)."""

    profile: Literal["legacy"] = "legacy"
    unit_id: int = Field(default=1, ge=1, le=247)
    word_order: Literal["big", "little"] = Field(
        default="big", description="32-bit values: 'big' puts the high word first"
    )
    byte_order: Literal["big", "little"] = Field(
        default="big", description="'little' swaps the two bytes of every register"
    )
    motor_rpm: float = Field(default=1450.0, ge=0, le=65535)
    temperature_c: float = Field(default=42.0, ge=-3000, le=3000)
    power_kw: float = Field(default=5.5, ge=0)


class StationParams(_Model):
    """Manual workstation terminal publishing operator-confirmed counts as JSON over MQTT."""

    profile: Literal["station"] = "station"
    operator: str = "W001"
    work_order: str = "WO-0001"


class EnergyParams(_Model):
    """Utility machine watched by an IoT energy box publishing JSON over MQTT."""

    profile: Literal["energy"] = "energy"
    rated_kw: float = Field(default=15.0, ge=0)
    idle_kw: float = Field(default=1.5, ge=0)
    voltage_v: float = Field(default=230.0, gt=0)
    power_factor: float = Field(default=0.92, gt=0, le=1)


ProfileParams = Annotated[
    CncParams | InjectionParams | LegacyParams | StationParams | EnergyParams,
    Field(discriminator="profile"),
]
