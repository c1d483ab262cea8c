"""The gateway's one config file (TOML), validated completely before anything connects.

Secrets stay out of the file: any string may be written ``"${NAME}"`` (or contain it) and is
taken from the environment; ``PLANTWIRE_EDGE_MQTT_URL`` overrides ``mqtt_url``. Relative
paths (buffer, certificates) are relative to the config file. Errors name the file, the
table and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator

from plantwire_bus.mqtt import parse_mqtt_url
from plantwire_bus.tomlfile import problems, where
from plantwire_edge.devices import (
    ID,
    AnyDevice,
    Device,
    FieldSelector,
    ModbusDevice,
    Model,
    MqttDevice,
    OpcUaDevice,
    Register,
    Tag,
)

__all__ = [
    "BufferConfig",
    "ConfigError",
    "Device",
    "EdgeConfig",
    "FieldSelector",
    "HttpConfig",
    "ModbusDevice",
    "MqttDevice",
    "OpcUaDevice",
    "Register",
    "Tag",
    "load_config",
    "missing_files",
    "parse_config",
]

MQTT_URL_ENV = "PLANTWIRE_EDGE_MQTT_URL"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """An unusable config file; the message names the file, the table and the field."""


class BufferConfig(Model):
    """The store-and-forward buffer."""

    path: str | None = Field(
        default=None, description="SQLite file; omitted: in memory (lost when the gateway stops)"
    )
    max_values: int = Field(default=10_000_000, ge=1_000, description="bound of the buffer")
    overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    sync: Literal["full", "normal"] = Field(
        default="full", description="full: survives power loss; normal: survives crashes"
    )


class HttpConfig(Model):
    """Where /metrics and /healthz are served."""

    listen: str = Field(default="127.0.0.1:9102", pattern=r"^[^\s:]*:\d{1,5}$")

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "0.0.0.0", int(port)


class EdgeConfig(Model):
    group_id: str = Field(pattern=ID, description="Sparkplug group id = enterprise code")
    edge_node_id: str = Field(pattern=ID, description="this gateway's Sparkplug edge node id")
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    primary_host_id: str | None = Field(
        default="plantwire",
        description="hold data until this Sparkplug host's STATE is online; '' for none",
    )
    batch_ms: int = Field(default=100, ge=0, description="collect changes this long per DDATA")
    commit_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="with a primary host that confirms commits: data it has not confirmed "
        "this long after sending is sent again (flagged historical)",
    )
    spec_strict: bool = Field(
        default=False,
        description="Sparkplug to the letter: births, data and device deaths at QoS 0 and a "
        "DISCONNECT that asks the broker for the Will; default QoS 1 so that the buffer can "
        "wait for the broker's PUBACK (docs/sparkplug.md)",
    )
    application_uri: str | None = Field(
        default=None, description="OPC UA client application URI (in the gateway certificate)"
    )
    buffer: BufferConfig = BufferConfig()
    http: HttpConfig | None = None
    devices: tuple[Device, ...] = Field(min_length=1)

    @field_validator("primary_host_id")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_mqtt_url(value)
        return value

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices: tuple[AnyDevice, ...]) -> tuple[AnyDevice, ...]:
        ids = [d.device_id for d in devices]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate device_id: {', '.join(duplicates)}")
        return devices

    @property
    def client_uri(self) -> str:
        """The OPC UA application URI of this gateway."""
        return self.application_uri or f"urn:plantwire:edge:{self.group_id}:{self.edge_node_id}"


def _substitute(data: Any, env: Mapping[str, str], loc: tuple[int | str, ...]) -> Any:
    """``${NAME}`` references in strings replaced from ``env``; missing ones raise KeyError."""
    if isinstance(data, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise KeyError(f"{where(loc)}: environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(lookup, data)
    if isinstance(data, dict):
        return {k: _substitute(v, env, (*loc, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, env, (*loc, i)) for i, v in enumerate(data)]
    return data


_PATH_KEYS = ("certificate", "private_key", "server_certificate")
_URL_FILES = ("cafile", "certfile", "keyfile")


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    def resolve(table: dict[str, Any], key: str) -> None:
        value = table.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            table[key] = str(base / value)

    if isinstance(data.get("buffer"), dict):
        resolve(data["buffer"], "path")
    if isinstance(data.get("mqtt_url"), str):  # its cafile=, certfile=, keyfile=
        parts = urlsplit(data["mqtt_url"])
        given = parse_qsl(parts.query, keep_blank_values=True)
        query = [
            (k, str(base / v) if k in _URL_FILES and v and not Path(v).is_absolute() else v)
            for k, v in given
        ]
        if query != given:
            data["mqtt_url"] = urlunsplit(parts._replace(query=urlencode(query)))
    for device in data.get("devices", []) if isinstance(data.get("devices"), list) else []:
        if isinstance(device, dict):
            for key in _PATH_KEYS:
                resolve(device, key)


def parse_config(
    text: str,
    source: str = "<config>",
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> EdgeConfig:
    """Parse and validate a config; raises :class:`ConfigError` naming every bad field."""
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    try:
        data = _substitute(data, env, ())
    except KeyError as exc:
        raise ConfigError(f"{source}: {exc.args[0]}") from None
    if base_dir is not None:  # (paths in the file are relative to it)
        _resolve_paths(data, base_dir)
    if env.get(MQTT_URL_ENV):
        data["mqtt_url"] = env[MQTT_URL_ENV]
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {problems(exc)}") from exc


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> EdgeConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, str(path), environ=environ, base_dir=path.resolve().parent)


def missing_files(config: EdgeConfig) -> list[str]:
    """Problems with files the config names (certificates, the buffer's directory)."""
    problems = []
    for index, device in enumerate(config.devices):
        if not isinstance(device, OpcUaDevice):
            continue
        for key in _PATH_KEYS:
            value = getattr(device, key)
            if value and not Path(value).is_file():
                hint = (
                    ""
                    if key == "server_certificate"
                    else (" (create it with 'plantwire edge cert CONFIG')")
                )
                problems.append(f"devices[{index}].{key}: file not found: {value}{hint}")
    if config.buffer.path is not None:
        parent = Path(config.buffer.path).parent
        if not parent.is_dir():
            problems.append(f"buffer.path: directory does not exist: {parent}")
    return problems
