"""Service provisioning: the in-process broker fallback and database helpers, for real."""

from __future__ import annotations

import asyncio

import psycopg

from plantwire_bus.mqtt import MqttClient, Will, parse_mqtt_url
from plantwire_bus.topics import decode_state, encode_state
from plantwire_platform import services


async def test_in_process_broker_carries_qos1_retained_and_will(unique: str) -> None:
    broker = await services.start_broker_in_process()
    try:
        address = parse_mqtt_url(broker.url)
        assert not address.mqtt5  # amqtt speaks MQTT 3.1.1
        host = MqttClient(address, f"host-{unique}", manual_ack=True)
        await host.connect()
        await host.subscribe("spBv1.0/#", 1)
        edge = MqttClient(address, f"edge-{unique}", will=Will("spBv1.0/G/NDEATH/N", b"bye", qos=1))
        await edge.connect()
        await edge.publish("spBv1.0/STATE/h", encode_state(True, 5), retain=True)
        for i in range(5):
            await edge.publish("spBv1.0/G/DDATA/N/D", bytes([i]))
        got = [await asyncio.wait_for(host.next_message(), 5) for _ in range(6)]
        for m in got:
            host.ack(m)
        assert decode_state(got[0].payload) == (True, 5)
        assert [m.payload for m in got[1:]] == [bytes([i]) for i in range(5)]
        edge.drop_connection()  # vanish without DISCONNECT: the Will must be published
        will = await asyncio.wait_for(host.next_message(), 10)
        assert (will.topic, will.payload) == ("spBv1.0/G/NDEATH/N", b"bye")
        late = MqttClient(address, f"late-{unique}")
        await late.connect()
        await late.subscribe("spBv1.0/STATE/#", 1)
        retained = await asyncio.wait_for(late.next_message(), 5)
        assert retained.retain and decode_state(retained.payload) == (True, 5)
        await late.disconnect()
        await host.disconnect()
    finally:
        broker.stop()


def test_ensure_database_is_idempotent_and_fresh_drops(pg_admin_url: str, unique: str) -> None:
    name = f"plantwire_svc_{unique}"
    url = services.ensure_database(pg_admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE marker (x int)")
    assert services.ensure_database(pg_admin_url, name) == url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM marker").fetchone() == (0,)
    services.ensure_database(pg_admin_url, name, fresh=True)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
    services.drop_database(pg_admin_url, name)
    assert not services.database_reachable(url)


def test_with_database_keeps_host_socket_and_query() -> None:
    assert services.with_database("postgresql:///postgres", "x") == "postgresql:///x"
    assert services.with_database("postgresql://u:p@h:5/postgres", "x") == "postgresql://u:p@h:5/x"
    assert (
        services.with_database("postgresql://postgres:@/postgres?host=/tmp/pg", "x")
        == "postgresql://postgres:@/x?host=/tmp/pg"
    )
