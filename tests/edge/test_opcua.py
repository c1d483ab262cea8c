"""The OPC UA adapter against real asyncua servers and a real Mosquitto: batching by the
server's limits, a bad node isolated and reported, polling, re-subscription after a server
restart, SignAndEncrypt with certificates and user/password, and absurd device clocks."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from cryptography.x509.oid import ExtendedKeyUsageOID

from plantwire_bus.mosquitto import free_port
from plantwire_edge.config import EdgeConfig
from plantwire_edge.opcua_session import create_certificate
from plantwire_sim.clock import SimClock

from .conftest import http_get, probe_on, running, ua_server

D = ua.VariantType.Double


def gateway_config(group: str, mqtt_url: str, device: dict[str, Any], **extra: Any) -> EdgeConfig:
    return EdgeConfig.model_validate(
        {
            "group_id": group,
            "edge_node_id": "GW1",
            "mqtt_url": mqtt_url,
            "primary_host_id": "",
            "batch_ms": 50,
            "devices": [{"kind": "opcua", "device_id": "M1", **device}],
            **extra,
        }
    )


async def test_bad_node_isolated_among_100_and_reported(
    mqtt_url: str, group: str, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"V{i:03d}" for i in range(100)]
    limit = ua.NodeId(
        ua.Int32(ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall)
    )

    async def small_limits(server: Server) -> None:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        thirty = ua.DataValue(ua.Variant(30, ua.VariantType.UInt32))
        await server.write_attribute_value(limit, thirty)

    variables = {n: (D, 0.0) for n in names} | {"Polled": (ua.VariantType.Int32, 0)}
    http_port = free_port()
    async with ua_server(variables, setup=small_limits) as srv:
        tags = [{"node": srv.address(n), "metric": f"Values/{n}"} for n in names]
        tags.insert(50, {"node": srv.address("Missing"), "metric": "Values/Missing"})
        tags.append(
            {"node": srv.address("Polled"), "metric": "Polled", "datatype": "Int32", "mode": "poll"}
        )
        cfg = gateway_config(
            group,
            mqtt_url,
            {"endpoint": srv.endpoint, "tags": tags, "poll_interval_ms": 100},
            http={"listen": f"127.0.0.1:{http_port}"},
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 15)
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "DBIRTH")
            written = set()
            for round_ in range(1, 4):
                for n in names:
                    ts = await srv.write(n, round_ + names.index(n) / 1000)
                    written.add((f"Values/{n}", round_ + names.index(n) / 1000, ts))
                await asyncio.sleep(0.2)
            ts = await srv.write("Polled", 42)
            written.add(("Polled", 42, ts))

            def seen() -> set[tuple[str, Any, int]]:
                return {(s.metric, s.value, s.ts) for s in probe.values() if s.kind == "DDATA"}

            await probe.wait_for(lambda: written <= seen(), "every written value")
            status, metrics = await http_get(http_port, "/metrics")
            health_status, health = await http_get(http_port, "/healthz")

    assert adapter.limits.monitored_items_per_call == 30  # read from the server, used
    missing = srv.address("Missing")
    assert adapter.status.bad_points == {missing: "BadNodeIdUnknown"}
    assert status == 200
    assert (
        f'plantwire_edge_bad_point{{device="M1",point="{missing}",reason="BadNodeIdUnknown"}} 1.0'
    ) in metrics
    assert 'plantwire_edge_bad_points{device="M1",kind="opcua"} 1.0' in metrics
    assert 'plantwire_edge_adapter_up{device="M1",kind="opcua",state="connected"} 1.0' in metrics
    assert health_status == 200 and '"state": "connected"' in health
    assert any(
        missing in r.getMessage() and "BadNodeIdUnknown" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )
    birth = {s.metric for s in probe.values() if s.kind == "DBIRTH"}
    assert birth == {f"Values/{n}" for n in names} | {"Polled"}


async def test_data_flows_again_after_the_server_restarts(mqtt_url: str, group: str) -> None:
    port = free_port()
    variables = {"Speed": (D, 0.0)}
    async with ua_server(variables, port=port) as srv:
        cfg = gateway_config(
            group,
            mqtt_url,
            {"endpoint": srv.endpoint, "tags": [{"node": srv.address("Speed"), "metric": "Speed"}]},
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 15)
            first = await srv.write("Speed", 1.0)
            await probe.wait_for(lambda: any(s.ts == first for s in probe.values()), "value 1")
            await srv.server.stop()
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "DDEATH")
            await asyncio.sleep(3)  # let the backoff grow
            # the new server registers another namespace first: the index of ours changes
            async with ua_server(variables, port=port, setup=_other_namespace_first) as again:
                back = time.monotonic()
                await asyncio.wait_for(adapter.connected.wait(), 10)
                second = await again.write("Speed", 2.0)
                await probe.wait_for(
                    lambda: any(s.ts == second for s in probe.values()),
                    "value after restart",
                    timeout=10 - (time.monotonic() - back),
                )
    assert probe.count("DBIRTH") == 2
    assert adapter.status.reconnects >= 1


@pytest.mark.parametrize("speed", [60, 600])
async def test_a_gateway_on_an_accelerated_clock_is_back_within_simulated_seconds(
    mqtt_url: str, group: str, speed: int
) -> None:
    """On a simulation's clock at ``speed`` the gateway retries a restarting server in that
    clock's time: the device's new session starts within 2 simulated seconds of the server
    listening again (on the same clock), not a wall retry later (at 600x, 0.1 wall s is a
    simulated minute), and not before the server was started."""
    clock = SimClock(time.time_ns() // 1_000_000 - 3_600_000, speed=speed)
    port = free_port()
    variables = {"Speed": (D, 0.0)}
    async with ua_server(variables, port=port) as srv:
        cfg = gateway_config(
            group,
            mqtt_url,
            {"endpoint": srv.endpoint, "tags": [{"node": srv.address("Speed"), "metric": "Speed"}]},
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg, clock) as gateway:
            adapter = gateway.adapters[0]
            await asyncio.wait_for(adapter.connected.wait(), 15)
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "DBIRTH")
            await srv.server.stop()
            await probe.wait_for(lambda: probe.count("DDEATH") == 1, "DDEATH")
            refused = adapter.status.reconnects
            # down until the gateway has found it refusing connections a few times
            await probe.wait_for(lambda: adapter.status.reconnects >= refused + 3, "retries")
            starting = clock.now_ms()
            await srv.server.start()  # listens again on its port
            listening = clock.now_ms()
            await probe.wait_for(lambda: probe.count("DBIRTH") == 2, "DBIRTH again")
    death, birth = probe.payloads("DDEATH")[0], probe.payloads("DBIRTH")[1]
    assert death.timestamp is not None and birth.timestamp is not None
    assert death.timestamp < starting <= birth.timestamp <= listening + 2_000, (
        f"born {(birth.timestamp - listening) / 1000:+.1f} simulated s after the server "
        f"listened again ({(listening - starting) / 1000:.1f} s to restart it) at {speed}x"
    )


@pytest.mark.parametrize(("speed", "interval_ms"), [(60, 5_000), (600, 30_000)])
async def test_polls_on_an_accelerated_clock_come_every_poll_interval_of_that_clock(
    mqtt_url: str, group: str, speed: int, interval_ms: int
) -> None:
    """A polled tag stamped with the gateway's time on a simulation's clock at ``speed``: the
    server changes it every four poll intervals of that clock, and every value is read and
    stamped within one interval (and 0.1 wall s) of its change. Polled every
    ``poll_interval_ms`` of wall time (5 and 30 wall s, 300 and 18,000 simulated s), all but
    the last change were never read."""
    clock = SimClock(time.time_ns() // 1_000_000 - 3_600_000, speed=speed)
    async with ua_server({"Count": (ua.VariantType.Int32, 0)}) as srv:
        cfg = gateway_config(
            group,
            mqtt_url,
            {
                "endpoint": srv.endpoint,
                "mode": "poll",
                "poll_interval_ms": interval_ms,
                "timestamp": "gateway",
                "tags": [{"node": srv.address("Count"), "metric": "Count", "datatype": "Int32"}],
            },
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg, clock) as gateway:
            await asyncio.wait_for(gateway.adapters[0].connected.wait(), 15)
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "DBIRTH")
            changed: dict[int, int] = {}
            for count in range(1, 5):
                changed[count] = await srv.write("Count", count, clock.now_ms())
                await asyncio.sleep(4 * interval_ms / 1000 / speed)

            def read() -> dict[int, int]:
                return {v.value: v.ts for v in probe.values() if v.metric == "Count"}

            await probe.wait_for(lambda: set(changed) <= set(read()), "every change", 5)
    late_s = {n: (read()[n] - at) / 1000 for n, at in changed.items()}
    allowed_s = interval_ms / 1000 + 0.1 * speed
    assert all(0 <= late <= allowed_s for late in late_s.values()), (late_s, allowed_s)


async def _other_namespace_first(server: Server) -> None:
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    await server.register_namespace("urn:plantwire:test:shifted")


class Users:
    """Accepts one user; counts every login attempt."""

    def __init__(self) -> None:
        self.attempts = 0

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        self.attempts += 1
        return User(role=UserRole.User) if (username, password) == ("operator", "s3cret") else None


async def test_sign_and_encrypt_with_certificates_and_user(
    mqtt_url: str, group: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = tmp_path / "pki"
    (pki / "trusted").mkdir(parents=True)
    gateway_uri = f"urn:plantwire:edge:{group}:GW1"
    # the gateway's certificate, created as 'plantwire edge cert' does; the admin trusts it
    await create_certificate(pki / "gw.der", pki / "gw.pem", gateway_uri, "localhost")
    (pki / "trusted" / "gw.der").write_bytes((pki / "gw.der").read_bytes())
    await setup_self_signed_certificate(
        pki / "server.pem",
        pki / "server.der",
        "urn:plantwire:test:server",
        "localhost",
        [ExtendedKeyUsageOID.SERVER_AUTH],
        {},
    )
    users = Users()

    async def secure(server: Server) -> None:
        await server.set_application_uri("urn:plantwire:test:server")
        await server.load_certificate(str(pki / "server.der"))
        await server.load_private_key(str(pki / "server.pem"))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.set_identity_tokens([ua.UserNameIdentityToken])
        store = TrustStore([pki / "trusted"], [])
        await store.load()
        server.set_certificate_validator(
            CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION
                | CertificateValidatorOptions.PEER_CLIENT,
                store,
            )
        )

    async with ua_server({"Speed": (D, 0.0)}, setup=secure, user_manager=users) as srv:

        def device(password: str, device_id: str) -> dict[str, Any]:
            return {
                "kind": "opcua",
                "device_id": device_id,
                "endpoint": srv.endpoint,
                "security_policy": "Basic256Sha256",
                "security_mode": "SignAndEncrypt",
                "certificate": str(pki / "gw.der"),
                "private_key": str(pki / "gw.pem"),
                "username": "operator",
                "password": password,
                "tags": [{"node": srv.address("Speed"), "metric": "Speed"}],
            }

        cfg = EdgeConfig.model_validate(
            {
                "group_id": group,
                "edge_node_id": "GW1",
                "mqtt_url": mqtt_url,
                "primary_host_id": "",
                "batch_ms": 50,
                "devices": [device("s3cret", "GOOD"), device("wrong-password", "BAD")],
            }
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            good, bad = gateway.adapters
            await asyncio.wait_for(good.connected.wait(), 20)
            ts = await srv.write("Speed", 12.5)
            await probe.wait_for(
                lambda: (
                    ("Speed", 12.5, ts)
                    in {(s.metric, s.value, s.ts) for s in probe.values() if s.device == "GOOD"}
                ),
                "value over SignAndEncrypt",
            )
            await probe.wait_for(lambda: bad.status.state == "auth_failed", "auth failure")
            attempts = users.attempts
            await asyncio.sleep(3)
            assert users.attempts == attempts  # no retry storm
    assert attempts == 2  # one for each device
    assert not bad.connected.is_set() and bad.status.connects == 0
    assert "rejected the user name or password" in bad.status.last_error
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("BAD" in m and "rejected the user name or password" in m for m in errors)


async def test_per_tag_timestamps_clock_check_and_deadband(mqtt_url: str, group: str) -> None:
    variables = {"Count": (ua.VariantType.UInt32, 0), "Temp": (D, 0.0), "Level": (D, 0.0)}
    async with ua_server(variables) as srv:
        cfg = gateway_config(
            group,
            mqtt_url,
            {
                "endpoint": srv.endpoint,
                "tags": [
                    {"node": srv.address("Count"), "metric": "Count", "datatype": "UInt32"},
                    {"node": srv.address("Temp"), "metric": "Temp", "timestamp": "gateway"},
                    {"node": srv.address("Level"), "metric": "Level", "deadband": 5.0},
                ],
            },
        )
        async with probe_on(mqtt_url, group) as probe, running(cfg) as gateway:
            await asyncio.wait_for(gateway.adapters[0].connected.wait(), 15)
            await probe.wait_for(lambda: probe.count("DBIRTH") == 1, "DBIRTH")
            plc_2000 = 946_684_800_000 + 3_600_000  # a PLC clock reset to 2000-01-01
            before = time.time_ns() // 1_000_000
            await srv.write("Count", 7, ts_ms=plc_2000)
            await srv.write("Temp", 21.5, ts_ms=plc_2000)
            for level in (100.0, 102.0, 110.0, 112.0, 120.0):
                await srv.write("Level", level)
                await asyncio.sleep(0.15)
            await probe.wait_for(
                lambda: (
                    {("Count", 7), ("Temp", 21.5), ("Level", 120.0)}
                    <= {(s.metric, s.value) for s in probe.values() if s.kind == "DDATA"}
                ),
                "values",
            )
            after = time.time_ns() // 1_000_000
    seen = {s.metric: s for s in probe.values() if s.kind == "DDATA"}
    assert seen["Count"].value == 7 and before <= seen["Count"].ts <= after
    assert seen["Count/DeviceTimestamp"].value == plc_2000  # the device's own time, kept
    assert seen["Count/DeviceTimestamp"].ts == seen["Count"].ts
    assert seen["Temp"].value == 21.5 and before <= seen["Temp"].ts <= after  # gateway time
    assert gateway.adapters[0].status.clock_flagged == 1  # Temp does not use device time
    assert probe.count("DBIRTH") == 2  # the companion metric joined the device's birth
    levels = [s.value for s in probe.values() if s.kind == "DDATA" and s.metric == "Level"]
    assert levels[-3:] == [100.0, 110.0, 120.0]  # changes within the deadband are not sent


async def test_a_subscription_taken_over_within_a_flush_interval_repeats_no_value(
    mqtt_url: str, group: str, tmp_path: Path
) -> None:
    """The node stores what arrived every ``batch_ms``, each publish response's sequence
    number with its values. A connection lost in between, the next session took the
    subscription over and asked the server again for every message after the last sequence
    number *stored*: the values already staged came a second time (each a copy, and where it
    came back to a millisecond its metric had left, once a rival of another value there).
    Staged messages count as had now: every value written goes out once."""
    async with ua_server({"V": (D, 0.0)}) as srv, probe_on(mqtt_url, group) as probe:
        device = {
            "endpoint": srv.endpoint,
            "publishing_interval_ms": 50,
            "tags": [{"node": srv.address("V"), "metric": "V"}],
        }
        buffer = {"path": str(tmp_path / "buffer.db")}
        config = gateway_config(group, mqtt_url, device, batch_ms=3_000, buffer=buffer)
        async with running(config) as gateway:
            adapter = gateway.adapters[0]
            await probe.wait_for(lambda: probe.count("DBIRTH") >= 1, "the device's birth")
            for i in range(5):
                await srv.write("V", i + 0.5)
                await asyncio.sleep(0.05)
            # a publish response's values staged, not stored yet (every 3 s; the next one
            # waits on the server until they are)
            await probe.wait_for(
                lambda: any(s[1] in {i + 0.5 for i in range(5)} for s in adapter.channel.staged),
                "values staged",
                5,
            )
            for transport in list(srv.server.iserver.asyncio_transports):
                transport.close()  # the connection lost, the session kept by the server
            await probe.wait_for(lambda: adapter.status.reconnects >= 1, "reconnect", 20)
            await asyncio.wait_for(adapter.connected.wait(), 20)
            await srv.write("V", 10.5)
            written = {v for _, v, _ in srv.written}
            await probe.wait_for(
                lambda: written <= {s.value for s in probe.values() if s.kind == "DDATA"},
                "every value written",
            )
            await asyncio.sleep(3.5)  # a flush more: a repeat would be out by now
        assert adapter.status.recovered == 1  # the subscription was taken over
    sent = [(s.value, s.ts) for s in probe.values() if s.kind == "DDATA" and s.value in written]
    assert sorted(sent) == sorted((v, ts) for _, v, ts in srv.written)
