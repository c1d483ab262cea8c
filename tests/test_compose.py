"""docker-compose.yml, checked statically (no Docker engine here): its structure, the files it
mounts, and every plantwire command it runs parsed by the real CLI parser."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantwire.cli import build_parser
from plantwire.demo import SECRET_SETTINGS
from plantwire_platform import timescaledb
from plantwire_platform.settings import PlatformSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def commands(service: dict[str, Any]) -> list[list[str]]:
    """The plantwire invocations in a service's command (list form or `sh -c` chains)."""
    command = service.get("command", [])
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] == ["sh", "-c"]:
        parts = [shlex.split(p) for p in command[2].replace("&& exec", "&&").split("&&")]
    else:
        parts = [command]
    return [p[1:] for p in parts if p and p[0] == "plantwire"]


def test_services_and_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"db", "broker", "migrate", "ingest", "api", "sim", "edge"} <= set(services)
    for name, service in services.items():
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
    # pinned to the TimescaleDB release and PostgreSQL major version the tests run on
    assert services["db"]["image"] == f"timescale/timescaledb:{timescaledb.VERSION}-pg15"
    assert services["broker"]["image"].startswith("eclipse-mosquitto:2")


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source


def test_every_plantwire_command_parses(compose: dict[str, Any]) -> None:
    parser = build_parser()
    seen = 0
    for name, service in compose["services"].items():
        for argv in commands(service):
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"service {name}: 'plantwire {' '.join(argv)}' does not parse")
            seen += 1
    assert seen >= 7


def test_environment_is_valid_platform_settings(compose: dict[str, Any]) -> None:
    env = compose["x-plantwire"]["environment"]
    settings = PlatformSettings.model_validate(
        {"database_url": env["DATABASE_URL"], "mqtt_url": env["MQTT_URL"]}
    )
    assert settings.database_url.endswith("@db:5432/plantwire")


def test_secrets_are_required(compose: dict[str, Any]) -> None:
    """The demo makes its secrets (plantwire.demo.SECRET_SETTINGS); the compose stack cannot, so
    it refuses to start without them instead of running an API that answers 503."""
    env = compose["x-plantwire"]["environment"]
    for name in SECRET_SETTINGS:
        assert env[name].startswith("${" + name + ":?"), name


def test_broker_uses_the_project_config(compose: dict[str, Any]) -> None:
    script = compose["services"]["broker"]["command"][2]
    conf = (ROOT / "broker" / "mosquitto.conf").read_text()
    assert "listener 1883 127.0.0.1" in conf.splitlines()  # what the sed rewrites
    assert "/plantwire/mosquitto.conf" in script


def test_scale_profile(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clustered EMQX nodes and three ingest workers on one shared subscription."""
    services = compose["services"]
    scale = {name for name, s in services.items() if "scale" in s.get("profiles", [])}
    assert {"emqx1", "emqx2", "ingest-1", "ingest-2", "ingest-3"} <= scale
    nodes = [services[n] for n in ("emqx1", "emqx2")]
    names = [n["environment"]["EMQX_NODE_NAME"] for n in nodes]
    for node, name in zip(nodes, names, strict=True):
        assert node["image"].startswith("emqx/emqx:5")
        host = name.split("@")[1]
        assert node["hostname"] == host and host in node["networks"]["default"]["aliases"]
        seeds = node["environment"]["EMQX_CLUSTER__STATIC__SEEDS"].strip("[]").split(",")
        assert sorted(s.strip() for s in seeds) == sorted(names)
    workers = [services[f"ingest-{i}"] for i in (1, 2, 3)]
    settings = []
    for worker in workers:  # read from the environment, as the process would
        with monkeypatch.context() as env:
            for key, value in worker["environment"].items():
                env.setenv(key, value)
            settings.append(PlatformSettings())
    assert {s.shared_group for s in settings} == {"ingest"}
    assert len({s.ingest_client_id for s in settings}) == 3
    assert {s.mqtt_url.split("//")[1].split(":")[0] for s in settings} == {"emqx1", "emqx2"}
    assert all(s.metrics_port == 9100 for s in settings)


def test_broker_refuses_anonymous_clients_and_publishes_tls_only(compose: dict[str, Any]) -> None:
    """Every shipped broker config: logins only (issue 12)."""
    conf = (ROOT / "broker" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf and "allow_anonymous true" not in conf
    services = compose["services"]
    assert services["broker"]["ports"] == ["8883:8883"]
    assert services["broker"]["depends_on"]["broker-init"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("ingest", "api"):
        assert services[name]["environment"]["PLANTWIRE_MQTT_URL_FILE"] == "/broker/host.url"
    assert "/broker/gateways/SZ1-GW1.toml" in services["edge"]["command"][2]
