"""Broker access made from the registry (issue 12): a real Mosquitto started with the files
``broker init`` and ``gateway provision`` write, over TLS, with a login per gateway."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import pwd
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from plantwire_bus.mosquitto import MosquittoProcess, find_mosquitto, free_port, password_hash
from plantwire_bus.mqtt import Message, MqttClient, MqttError, parse_mqtt_url
from plantwire_platform.gateways import authority
from plantwire_platform.gateways.broker_files import acl_file, gateway_username
from plantwire_platform.gateways.provisioning import (
    BrokerDir,
    ProvisioningError,
    client_url,
    init_broker,
    provision_gateway,
    revoke_gateway,
)
from plantwire_platform.registry.document import parse_registry
from plantwire_platform.registry.store import import_registry
from tests.conftest import missing

PLANTWIRE = Path(sys.executable).parent / "plantwire"
REGISTRY = """
[[enterprises]]
code = "G"
uscc = "91110000MA0000000X"
name = "Two Sites Works"

[[enterprises.sites]]
code = "A"
name = "Site A"
edge_node = "GW-A"

[[enterprises.sites]]
code = "B"
name = "Site B"
edge_node = "GW-B"
"""


def test_password_hash_is_mosquittos_pbkdf2_sha512() -> None:
    salt = bytes(range(12))
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 101, 64)
    _, seven, rounds, b64salt, b64hash = password_hash("s3cret", salt).split("$")
    assert (seven, rounds) == ("7", "101")
    assert base64.b64decode(b64salt) == salt and base64.b64decode(b64hash) == expected


def test_acl_gives_a_gateway_its_own_topics_only() -> None:
    from plantwire_platform.gateways.broker_files import BrokerUser

    text = acl_file([BrokerUser("G/GW-A", "x", "G", "GW-A"), BrokerUser("host", "y")])
    block = text.split("user G/GW-A\n", 1)[1]
    assert "topic write spBv1.0/G/NDATA/GW-A\n" in block
    assert "topic write spBv1.0/G/DDATA/GW-A/+\n" in block
    assert "topic read spBv1.0/G/NCMD/GW-A\n" in block
    assert "GW-B" not in text and "write spBv1.0/STATE" not in block and "#" not in block
    assert "user host\ntopic readwrite spBv1.0/#\n" in text


# -- a real broker -----------------------------------------------------------------------------
@dataclass
class Plant:
    broker: BrokerDir
    process: MosquittoProcess
    tls_port: int
    cert_port: int  # TLS listener that requires a client certificate
    host_url: str
    gateway_urls: dict[str, str]

    def url(self, user: str, password: str, port: int | None = None) -> str:
        return client_url(
            f"mqtts://127.0.0.1:{port or self.tls_port}", user, password, self.broker.ca.cert
        )


def mosquitto_conf(broker: BrokerDir, tls_port: int, cert_port: int) -> str:
    d = broker.path
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""per_listener_settings false
allow_anonymous false
password_file {d}/passwd
acl_file {d}/acl
pid_file {d}/mosquitto.pid
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages true
user {user}

listener {tls_port} 127.0.0.1
cafile {d}/ca.crt
certfile {d}/server.crt
keyfile {d}/server.key

listener {cert_port} 127.0.0.1
cafile {d}/ca.crt
certfile {d}/server.crt
keyfile {d}/server.key
require_certificate true
use_identity_as_username true
"""


def start_broker(broker: BrokerDir, tls_port: int, cert_port: int) -> MosquittoProcess:
    conf = broker.path / "mosquitto.conf"
    conf.write_text(mosquitto_conf(broker, tls_port, cert_port))
    log = broker.path / "mosquitto.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [find_mosquitto() or "mosquitto", "-c", str(conf)], stdout=out, stderr=out
        )
    process = MosquittoProcess(proc, tls_port, log)
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            for port in (tls_port, cert_port):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if broker.pid_file.exists():
                return process
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.stop()
            raise AssertionError(log.read_text())
        time.sleep(0.05)


Credential = tuple[str, str, authority.Issued | None]  # login, password, client certificate


async def provisioned(
    database_url: str, broker: BrokerDir, registry: str, client_cert: dict[tuple[str, str], bool]
) -> tuple[str, dict[tuple[str, str], Credential]]:
    """``registry`` imported, the files of ``broker init`` written and each gateway (group,
    node) of ``client_cert`` provisioned, with a client certificate where it says so: the
    host's password and what each gateway was issued."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await import_registry(conn, parse_registry(registry))
        host_password = await init_broker(conn, broker, "plantwire-host", ("127.0.0.1",))
        issued: dict[tuple[str, str], Credential] = {}
        for (group, node), cert in client_cert.items():
            issued[group, node] = await provision_gateway(
                conn, broker, group, node, client_cert=cert
            )
    return host_password, issued


@contextlib.contextmanager
def broker_running(broker: BrokerDir) -> Iterator[tuple[MosquittoProcess, int, int]]:
    """Mosquitto started with ``broker``'s files (:func:`start_broker`) on free ports: the
    process, its TLS port and its certificate port; stopped after."""
    if find_mosquitto() is None:
        missing("no mosquitto binary")  # a failure in CI, a skip elsewhere
    tls_port, cert_port = free_port(), free_port()
    process = start_broker(broker, tls_port, cert_port)
    try:
        yield process, tls_port, cert_port
    finally:
        process.stop()


@pytest.fixture
async def plant(database_url: str, tmp_path: Path) -> AsyncIterator[Plant]:
    broker = BrokerDir(tmp_path / "broker")
    gateways = {("G", "GW-A"): True, ("G", "GW-B"): False}
    host_password, issued = await provisioned(database_url, broker, REGISTRY, gateways)
    with broker_running(broker) as (process, tls_port, cert_port):
        p = Plant(broker, process, tls_port, cert_port, "", {})
        p.host_url = p.url("plantwire-host", host_password)
        p.gateway_urls = {n: p.url(user, pw) for (_, n), (user, pw, _) in issued.items()}
        yield p


async def received(client: MqttClient, seconds: float) -> list[Message]:
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(await asyncio.wait_for(client.next_message(), left))
        except TimeoutError:
            break
    return out


async def test_gateway_a_cannot_publish_under_b_nor_speak_for_the_host(plant: Plant) -> None:
    async with (
        MqttClient(parse_mqtt_url(plant.host_url), "host") as host,
        MqttClient(parse_mqtt_url(plant.gateway_urls["GW-A"]), "gw-a") as a,
    ):
        await host.subscribe("spBv1.0/#")
        await a.publish("spBv1.0/G/NDATA/GW-A", b"own")  # its own: delivered
        await a.publish("spBv1.0/G/DDATA/GW-A/CNC-01", b"own device")
        for topic in (
            "spBv1.0/G/NDATA/GW-B",
            "spBv1.0/G/DDATA/GW-B/CNC-01",
            "spBv1.0/G/NBIRTH/ROGUE-GW",
            "spBv1.0/H/NDATA/GW-A",  # another group
            "spBv1.0/STATE/plantwire",  # only the host says STATE
            "spBv1.0/G/NCMD/GW-B",  # and commands
        ):
            with pytest.raises(MqttError, match="Not authorized"):
                await a.publish(topic, b"hostile")
        got = await received(host, 1.0)
    assert [(m.topic, m.payload) for m in got] == [
        ("spBv1.0/G/NDATA/GW-A", b"own"),
        ("spBv1.0/G/DDATA/GW-A/CNC-01", b"own device"),
    ]


async def test_gateway_a_cannot_read_b_but_reads_its_commands_and_state(plant: Plant) -> None:
    async with (
        MqttClient(parse_mqtt_url(plant.host_url), "host") as host,
        MqttClient(parse_mqtt_url(plant.gateway_urls["GW-A"]), "gw-a") as a,
        MqttClient(parse_mqtt_url(plant.gateway_urls["GW-B"]), "gw-b") as b,
    ):
        for topic in ("spBv1.0/#", "spBv1.0/G/NCMD/GW-A", "spBv1.0/STATE/+"):
            await a.subscribe(topic)
        await b.publish("spBv1.0/G/NDATA/GW-B", b"b's data")
        await b.publish("spBv1.0/G/DDATA/GW-B/CNC-01", b"b's machine")
        await host.publish("spBv1.0/G/NCMD/GW-B", b"b's command")
        await host.publish("spBv1.0/G/NCMD/GW-A", b"a's command")
        await host.publish("spBv1.0/STATE/plantwire", b"online")
        got = await received(a, 1.0)
    # (overlapping subscriptions may bring a message twice)
    assert {(m.topic, m.payload) for m in got} == {
        ("spBv1.0/G/NCMD/GW-A", b"a's command"),
        ("spBv1.0/STATE/plantwire", b"online"),
    }


async def test_wrong_password_untrusted_cert_and_revoked_gateway_are_refused(
    plant: Plant, database_url: str, tmp_path: Path
) -> None:
    user = gateway_username("G", "GW-A")
    with pytest.raises(MqttError, match="refused the connection: Not authorized"):
        await MqttClient(parse_mqtt_url(plant.url(user, "wrong")), "x").connect(5)
    with pytest.raises(MqttError, match="refused the connection"):
        await MqttClient(parse_mqtt_url(plant.url("nobody", "x")), "y").connect(5)
    # a client certificate of the platform's CA is the login on the certificate listener
    cert = authority.Issued(
        plant.broker.path / "clients" / "G" / "GW-A.crt",
        plant.broker.path / "clients" / "G" / "GW-A.key",
    )
    own = client_url(f"mqtts://127.0.0.1:{plant.cert_port}", "ignored", "x", plant.broker.ca.cert,
                     cert)  # fmt: skip
    async with MqttClient(parse_mqtt_url(own), "cert-a") as a:
        await a.publish("spBv1.0/G/NDATA/GW-A", b"by certificate")
        with pytest.raises(MqttError, match="Not authorized"):
            await a.publish("spBv1.0/G/NDATA/GW-B", b"x")
    # one of another CA is not
    foreign = authority.make_ca(tmp_path / "foreign")
    stranger = authority.issue(foreign, tmp_path / "foreign", "a", user)
    bad = client_url(f"mqtts://127.0.0.1:{plant.cert_port}", "x", "x", plant.broker.ca.cert,
                     stranger)  # fmt: skip
    with pytest.raises(MqttError):
        await MqttClient(parse_mqtt_url(bad), "stranger").connect(5)
    # revoked: the broker is reloaded and refuses the gateway at its next connect
    async with MqttClient(parse_mqtt_url(plant.gateway_urls["GW-A"]), "gw-a"):
        pass
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await revoke_gateway(conn, plant.broker, "G", "GW-A")
        with pytest.raises(ProvisioningError, match="holds no credential"):
            await revoke_gateway(conn, plant.broker, "G", "GW-A")
    deadline = time.monotonic() + 10  # SIGHUP sent: Mosquitto rereads the files at once
    while True:
        client = MqttClient(parse_mqtt_url(plant.gateway_urls["GW-A"]), "gw-a")
        try:
            await client.connect(5)
        except MqttError as exc:
            assert "refused the connection: Not authorized" in str(exc)
            break
        await client.disconnect()
        assert time.monotonic() < deadline, "the revoked gateway still connects"
        await asyncio.sleep(0.1)
    async with MqttClient(parse_mqtt_url(plant.gateway_urls["GW-B"]), "gw-b"):
        pass  # the other gateway is untouched


DOTTED = """
[[enterprises]]
code = "a.b"
uscc = "91110000MA0000001X"
name = "Dotted Group Works"

[[enterprises.sites]]
code = "S"
name = "Site"
edge_node = "c"

[[enterprises]]
code = "a"
uscc = "91110000MA0000002X"
name = "Plain Group Works"

[[enterprises.sites]]
code = "S"
name = "Site"
edge_node = "b.c"
"""


async def test_gateways_whose_names_join_alike_get_a_certificate_each(
    database_url: str, tmp_path: Path
) -> None:
    """Group ``a.b`` node ``c`` and group ``a`` node ``b.c`` (codes may hold dots): each gets
    its own certificate, and the broker's certificate listener takes each as its own login.
    (The files were ``clients/a.b.c.crt`` for both: the second overwrote the first's key.)"""
    broker = BrokerDir(tmp_path / "broker")
    gateways = (("a.b", "c"), ("a", "b.c"))
    _, issued = await provisioned(database_url, broker, DOTTED, dict.fromkeys(gateways, True))
    certs = {}
    for user, _, cert in issued.values():
        assert cert is not None
        certs[user] = cert
    assert sorted(certs) == ["a.b/c", "a/b.c"]
    with broker_running(broker) as (_, _, cert_port):
        for (group, node), (user, cert) in zip(gateways, certs.items(), strict=True):
            url = client_url(f"mqtts://127.0.0.1:{cert_port}", "ignored", "x", broker.ca.cert,
                             cert)  # fmt: skip
            other = "a/NDATA/b.c" if group == "a.b" else "a.b/NDATA/c"
            async with MqttClient(parse_mqtt_url(url), f"cert-{node}") as client:
                await client.publish(f"spBv1.0/{group}/NDATA/{node}", user.encode())
                with pytest.raises(MqttError, match="Not authorized"):
                    await client.publish(f"spBv1.0/{other}", b"the other's")
    clients = broker.path / "clients"
    assert certs["a.b/c"] == authority.Issued(clients / "a.b" / "c.crt", clients / "a.b" / "c.key")
    assert certs["a/b.c"] == authority.Issued(clients / "a" / "b.c.crt", clients / "a" / "b.c.key")
    for user, cert in certs.items():  # the file names the login its certificate holds
        subject = x509.load_pem_x509_certificate(cert.cert.read_bytes()).subject
        assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == user
        assert cert.cert.relative_to(clients).with_suffix("").as_posix() == user


async def test_provisioning_issues_once_and_only_for_registered_gateways(
    database_url: str, tmp_path: Path
) -> None:
    broker = BrokerDir(tmp_path / "broker")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await import_registry(conn, parse_registry(REGISTRY))
        await init_broker(conn, broker, "plantwire-host", ("127.0.0.1",))
        with pytest.raises(ProvisioningError, match="register it first"):
            await provision_gateway(conn, broker, "G", "ROGUE-GW")
        await provision_gateway(conn, broker, "G", "GW-A")
        with pytest.raises(ProvisioningError, match="holds a credential already"):
            await provision_gateway(conn, broker, "G", "GW-A")
        await revoke_gateway(conn, broker, "G", "GW-A")
        await provision_gateway(conn, broker, "G", "GW-A")  # anew after a revocation
    assert broker.passwd.read_text().count("G/GW-A:$7$101$") == 1


def test_cli_provisions_a_gateway_into_its_config(database_url: str, tmp_path: Path) -> None:
    async def registry() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await import_registry(conn, parse_registry(REGISTRY))

    asyncio.run(registry())
    env = dict(os.environ, DATABASE_URL=database_url)
    broker, config = tmp_path / "broker", tmp_path / "gw-a.toml"
    config.write_text('group_id = "X"\n[[devices]]\nkind = "mqtt"\ndevice_id = "M1"\n')
    run = [str(PLANTWIRE), "platform"]
    init = subprocess.run([*run, "broker", "init", str(broker)], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert init.stdout.startswith("MQTT_URL=mqtts://plantwire-host:")
    args = ["gateway", "provision", "G", "GW-A", "--broker-dir", str(broker), "--config",
            str(config), "--url", "mqtts://broker.example:8883", "--client-cert"]  # fmt: skip
    done = subprocess.run([*run, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "password" not in done.stdout and "G/GW-A" in done.stdout
    cert_file = (broker / "clients" / "G" / "GW-A.crt").resolve()
    assert f"client certificate {cert_file} (key GW-A.key)" in done.stdout
    again = subprocess.run([*run, *args], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert again.stderr.strip().endswith("revoke it first (plantwire platform gateway revoke)")
    listed = subprocess.run([*run, "gateway", "list", "G"], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[:3] for line in listed.stdout.splitlines()[1:]]
    assert rows == [["A", "GW-A", "issued"], ["B", "GW-B", "none"]]
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    written = tomllib.loads(config.read_text())
    assert (written["group_id"], written["edge_node_id"]) == ("G", "GW-A")
    assert written["devices"] == [{"kind": "mqtt", "device_id": "M1"}]  # kept
    address = parse_mqtt_url(written["mqtt_url"])
    assert (address.username, address.host, address.port, address.tls) == (
        "G/GW-A", "broker.example", 8883, True)  # fmt: skip
    assert address.ca_file == str((broker / "ca.crt").resolve())
    assert (address.cert_file, address.key_file) == (
        str(cert_file),
        str(cert_file.with_suffix(".key")),
    )


async def test_the_projects_broker_refuses_anonymous_clients(mqtt_url: str) -> None:
    address = parse_mqtt_url(mqtt_url)
    assert address.username  # the test broker's own login
    anonymous = f"mqtt://127.0.0.1:{address.port}"
    with pytest.raises(MqttError, match="refused the connection: Not authorized"):
        await MqttClient(parse_mqtt_url(anonymous), "anonymous").connect(5)


def test_the_platform_reads_its_mqtt_url_from_a_file(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from plantwire_platform.settings import PlatformSettings

    path = tmp_path / "host.url"
    path.write_text("mqtts://plantwire-host:pw@broker:8883?cafile=%2Fbroker%2Fca.crt\n")
    settings = PlatformSettings(mqtt_url_file=str(path))
    assert settings.mqtt_url == "mqtts://plantwire-host:pw@broker:8883?cafile=%2Fbroker%2Fca.crt"
    with pytest.raises(ValidationError, match="No such file"):
        PlatformSettings(mqtt_url_file=str(tmp_path / "missing"))


async def test_a_refused_gateway_says_so_once_and_backs_off(
    plant: Plant, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway whose login is refused (a wrong password here; a revoked one is the same
    answer) logs one clear line and retries with a backoff, not in a storm."""
    from plantwire_edge.config import EdgeConfig
    from plantwire_edge.node import EdgeNode

    user = gateway_username("G", "GW-A")
    config = EdgeConfig.model_validate(
        {
            "group_id": "G",
            "edge_node_id": "GW-A",
            "mqtt_url": plant.url(user, "wrong"),
            "primary_host_id": "",
            "devices": [
                {
                    "kind": "opcua",
                    "device_id": "M1",
                    "endpoint": "opc.tcp://127.0.0.1:1",
                    "tags": [{"node": "nsu=urn:x;s=a", "metric": "Count"}],
                }
            ],
        }
    )
    node = EdgeNode(config)
    halt = asyncio.Event()
    uplink = asyncio.create_task(node.uplink.run(halt))
    await asyncio.sleep(6)
    halt.set()
    await asyncio.wait_for(uplink, 15)
    lines = [r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage()]
    assert lines == [
        f"MQTT broker mqtts://127.0.0.1:{plant.tls_port} refused the connection: "
        "Not authorized; retrying"
    ]
    # backoff 1 s, 2 s, 4 s (each 50-100 %): at most 4 attempts in 6 s, not hundreds
    assert 2 <= node.uplink.stats.connect_failures <= 4
    assert node.uplink.stats.connects == 0
