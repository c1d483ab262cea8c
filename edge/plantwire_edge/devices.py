"""Device tables of the gateway config: a discriminated union on ``kind``.

``opcua`` reads an OPC UA server by subscription or polling, ``modbus`` polls a Modbus TCP
register map, ``mqtt`` listens to a device's vendor JSON on a plant broker.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plantwire_bus.mqtt import parse_mqtt_url
from plantwire_bus.payload import DataType
from plantwire_edge.mapping import TABLES
from plantwire_edge.registers import BIT_TABLES, RegisterType, Table
from plantwire_edge.selector import SelectorError, parse_selector
from plantwire_edge.values import PUBLISHABLE

ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "password", "secret", "xxx", "todo", "<password>"}
)
Timestamp = Literal["source", "server", "gateway"]
SILENT_INTERVALS = 3
"""An MQTT device silent for this many of its publishing intervals is offline."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _datatype(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in DataType.__members__:
        raise ValueError(f"unknown Sparkplug datatype {value!r}")
    if DataType[value] not in PUBLISHABLE:
        raise ValueError(f"datatype {value} cannot be published by the gateway")
    return value


def _table(value: str | None) -> str | None:
    if value is not None and value not in TABLES:
        raise ValueError(f"unknown mapping table {value!r}; known: {', '.join(TABLES)}")
    return value


def _unique_metrics(points: tuple[Point, ...]) -> None:
    """Each metric has one point, or one point and points that ``override`` some of its
    canonical values."""
    names = [p.metric_name for p in points if not p.override]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"metric published twice: {', '.join(doubled)}")


class Point(Model):
    """What every tag, register and field shares: the metric it feeds and how."""

    metric: str = Field(default="", description="Sparkplug metric name; ignored with map")
    datatype: str = Field(default="Double", description="Sparkplug datatype name")
    map: str | None = Field(default=None, description="mapping table to the canonical state")
    override: tuple[str, ...] = Field(
        default=(),
        description="with map: canonical values of this point that win over the other point "
        "feeding the same metric while they last (e.g. MDI from OPC 40502 CncOperationMode "
        "over OPC 40501 MachineOperationMode, which has no MDI)",
    )

    @field_validator("datatype")
    @classmethod
    def _check_datatype(cls, value: str | None) -> str | None:
        return _datatype(value)

    @field_validator("map")
    @classmethod
    def _check_map(cls, value: str | None) -> str | None:
        return _table(value)

    @model_validator(mode="after")
    def _named(self) -> Point:
        if not self.metric and self.map is None:
            raise ValueError("metric is required (unless map names a mapping table)")
        if self.override:
            if self.map is None:
                raise ValueError("override needs map (it overrides canonical state values)")
            known = set(TABLES[self.map].values.values())
            unknown = sorted(set(self.override) - known)
            if unknown:
                raise ValueError(f"override: {', '.join(unknown)} not produced by {self.map}")
        return self

    @property
    def metric_name(self) -> str:
        return TABLES[self.map].metric if self.map is not None else self.metric

    @property
    def published_datatype(self) -> DataType:
        return DataType.String if self.map is not None else DataType[self.datatype]


class Tag(Point):
    """One OPC UA variable published as one metric."""

    node: str = Field(description="'nsu=<namespace URI>;s=<id>' (or i=, g=, b=)")
    mode: Literal["subscribe", "poll"] | None = None
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    deadband: float = Field(default=0.0, ge=0, description="0: every change")
    deadband_type: Literal["absolute", "percent"] = "absolute"
    timestamp: Timestamp | None = None

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not value.startswith("nsu=") or ";" not in value:
            raise ValueError("address nodes by namespace URI: 'nsu=<uri>;s=<id>'")
        _, _, identifier = value.partition(";")
        if identifier[:2] not in ("s=", "i=", "g=", "b="):
            raise ValueError("the identifier after ';' must start with s=, i=, g= or b=")
        return value


class OpcUaDevice(Model):
    kind: Literal["opcua"]
    device_id: str = Field(pattern=ID, description="Sparkplug device id = equipment code")
    endpoint: str = Field(description="opc.tcp://HOST[:PORT][/path]")
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: int = Field(default=100, ge=10)
    sampling_interval_ms: float = Field(default=0.0, ge=0, description="0: fastest practical")
    queue_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="values per monitored item the server keeps while the gateway is slow "
        "or away (a burst of writes, a reconnect)",
    )
    poll_interval_ms: int = Field(
        default=1000,
        ge=10,
        description="between polls, in ms of the gateway's clock (a simulation's, followed with "
        "--clock-file), at least 10 wall ms apart",
    )
    history_backfill: bool = Field(
        default=True,
        description="when a new subscription had to be created (the server restarted, or the "
        "gateway was away longer than the subscription's lifetime), read the values written "
        "in between from the server's history, if it keeps one",
    )
    timestamp: Timestamp = "source"
    max_clock_skew_s: float = Field(default=300.0, gt=0, description="future tolerance")
    max_age_days: float = Field(default=365.0, gt=0, description="older timestamps are absurd")
    timeout_s: float = Field(default=5.0, gt=0)
    watchdog_s: float = Field(
        default=5.0,
        gt=0,
        description="server-state probe interval, also the probe's timeout: a busy server "
        "answers late, not never",
    )
    reconnect_max_s: float = Field(default=5.0, ge=0.1, description="cap of jittered backoff")
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str | None = Field(default=None, description="gateway certificate (DER/PEM)")
    private_key: str | None = Field(default=None, description="gateway private key (PEM)")
    server_certificate: str | None = Field(default=None, description="pin the server's")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tags: tuple[Tag, ...] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError("an OPC UA endpoint is opc.tcp://HOST[:PORT][/path]")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"the port of {value!r} must be 1..65535")
        return value

    @model_validator(mode="after")
    def _security(self) -> OpcUaDevice:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_policy and security_mode must both be None or neither")
        if self.security_policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(
                "a secure endpoint needs certificate and private_key "
                "(create them with 'plantwire edge cert CONFIG')"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and self.password.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("password is a placeholder; set the real one (e.g. via ${ENV_VAR})")
        _unique_metrics(self.tags)
        return self


class Register(Point):
    """One value of a Modbus register map."""

    datatype: str | None = Field(default=None, description="default: from type and scale")  # type: ignore[assignment]
    table: Table
    address: int = Field(ge=0, le=65535, description="0-based")
    type: RegisterType = "uint16"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    bit: int | None = Field(default=None, ge=0, le=15)

    @model_validator(mode="after")
    def _layout(self) -> Register:
        bits = self.table in BIT_TABLES
        if bits and self.type != "bool":
            raise ValueError(f'{self.table} tables hold bits: use type = "bool"')
        if self.type == "bool" and not bits and self.bit is None:
            raise ValueError("type bool on a register needs bit = 0..15")
        if self.bit is not None and (bits or self.type not in ("uint16", "int16", "bool")):
            raise ValueError("bit selects a bit of a 16-bit holding or input register")
        scaled = self.scale != 1.0 or self.offset != 0.0
        if scaled and (self.bit is not None or self.type == "bool"):
            raise ValueError("scale and offset apply to numbers, not bits")
        if scaled and self.map is not None:
            raise ValueError("scale and offset cannot be combined with map")
        dt = self.datatype
        if scaled and dt is not None and dt not in ("Float", "Double"):
            raise ValueError("a scaled value is published as Float or Double")
        return self

    @property
    def is_bit(self) -> bool:
        return self.bit is not None or self.type == "bool"

    @property
    def published_datatype(self) -> DataType:
        if self.map is not None:
            return DataType.String
        if self.datatype is not None:
            return DataType[self.datatype]
        if self.is_bit:
            return DataType.Boolean
        if self.scale != 1.0 or self.offset != 0.0 or self.type == "float32":
            return DataType.Double if self.type != "float32" else DataType.Float
        return DataType[
            {"int16": "Int16", "uint16": "UInt16", "int32": "Int32", "uint32": "UInt32"}[self.type]
        ]


class ModbusDevice(Model):
    kind: Literal["modbus"]
    device_id: str = Field(pattern=ID, description="Sparkplug device id = equipment code")
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    poll_interval_ms: int = Field(
        default=1000,
        ge=10,
        description="between polls, in ms of the gateway's clock (a simulation's, followed with "
        "--clock-file), at least 10 wall ms apart",
    )
    timeout_s: float = Field(default=3.0, gt=0)
    max_gap: int = Field(default=8, ge=0, le=100, description="registers read across a gap")
    reconnect_max_s: float = Field(default=5.0, ge=0.1)
    registers: tuple[Register, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _metrics(self) -> ModbusDevice:
        _unique_metrics(self.registers)
        return self


class FieldSelector(Point):
    """One field of a vendor JSON payload."""

    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            parse_selector(value)
        except SelectorError as exc:
            raise ValueError(str(exc)) from None
        return value


class MqttDevice(Model):
    kind: Literal["mqtt"]
    device_id: str = Field(pattern=ID, description="Sparkplug device id = equipment code")
    broker_url: str = "mqtt://127.0.0.1:1883"
    topic: str = Field(min_length=1)
    timestamp_path: str | None = None
    timestamp_format: Literal["epoch_ms", "epoch_s", "iso8601"] = "epoch_ms"
    interval_s: float | None = Field(
        default=None, gt=0, description="the device publishes at least this often"
    )
    offline_after_s: float | None = Field(
        default=None, gt=0, description="offline when silent this long (default 3 x interval_s)"
    )
    heartbeat_topic: str | None = Field(
        default=None, min_length=1, description="messages here prove the device alive"
    )
    status_topic: str | None = Field(
        default=None, min_length=1, description="the device's status or Will (LWT) topic"
    )
    online_payload: str = "online"
    offline_payload: str = "offline"
    max_clock_skew_s: float = Field(default=300.0, gt=0)
    max_age_days: float = Field(default=365.0, gt=0)
    fields: tuple[FieldSelector, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _metrics(self) -> MqttDevice:
        _unique_metrics(self.fields)
        if (
            self.offline_after_s is not None
            and self.interval_s is not None
            and self.offline_after_s <= self.interval_s
        ):
            raise ValueError(
                f"offline_after_s ({self.offline_after_s:g}) must be longer than interval_s "
                f"({self.interval_s:g}): the device would go offline between two messages"
            )
        topics = [t for t in (self.topic, self.heartbeat_topic, self.status_topic) if t]
        if len(set(topics)) < len(topics):
            raise ValueError("topic, heartbeat_topic and status_topic must differ")
        if self.online_payload == self.offline_payload:
            raise ValueError("online_payload and offline_payload must differ")
        return self

    @property
    def silence_s(self) -> float | None:
        """How long a silence makes the device offline (None: never)."""
        if self.offline_after_s is not None:
            return self.offline_after_s
        return None if self.interval_s is None else SILENT_INTERVALS * self.interval_s

    def liveness_warning(self) -> str | None:
        """Why the gateway cannot know when this device is gone, if it cannot."""
        if self.silence_s is not None or self.status_topic is not None:
            return None
        return (
            "liveness cannot be known: it stays online while the plant broker is reachable, "
            "even if the device went silent; set interval_s (its publishing cadence), "
            "offline_after_s or status_topic (its Will)"
        )

    @field_validator("broker_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_mqtt_url(value)  # raises ValueError naming the problem
        return value

    @field_validator("topic", "heartbeat_topic", "status_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        levels = value.split("/")
        if any(("+" in lv and lv != "+") or ("#" in lv) for lv in levels):
            raise ValueError("topic may use '+' as a whole level; '#' is not allowed")
        return value

    @field_validator("timestamp_path")
    @classmethod
    def _ts_path(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_selector(value)
            except SelectorError as exc:
                raise ValueError(str(exc)) from None
        return value


Device = Annotated[OpcUaDevice | ModbusDevice | MqttDevice, Field(discriminator="kind")]
AnyDevice = OpcUaDevice | ModbusDevice | MqttDevice


def points(device: AnyDevice) -> tuple[Point, ...]:
    """The tags, registers or fields of ``device``."""
    if isinstance(device, OpcUaDevice):
        return device.tags
    if isinstance(device, ModbusDevice):
        return device.registers
    return device.fields
