"""Sparkplug topic namespace and STATE payloads."""

import json

import pytest

from plantwire_bus.payload import PayloadError
from plantwire_bus.topics import (
    NAMESPACE,
    MessageType,
    Topic,
    TopicError,
    decode_state,
    edge_node_subscriptions,
    encode_state,
    parse_topic,
    state_topic,
    subscription,
)


@pytest.mark.parametrize(
    ("topic", "text"),
    [
        (Topic("plant1", MessageType.NBIRTH, "edge-01"), "spBv1.0/plant1/NBIRTH/edge-01"),
        (Topic("plant1", MessageType.NDEATH, "edge-01"), "spBv1.0/plant1/NDEATH/edge-01"),
        (Topic("plant1", MessageType.NDATA, "edge-01"), "spBv1.0/plant1/NDATA/edge-01"),
        (Topic("plant1", MessageType.NCMD, "edge-01"), "spBv1.0/plant1/NCMD/edge-01"),
        (Topic("g", MessageType.DBIRTH, "e", "cnc-7"), "spBv1.0/g/DBIRTH/e/cnc-7"),
        (Topic("g", MessageType.DDEATH, "e", "cnc-7"), "spBv1.0/g/DDEATH/e/cnc-7"),
        (Topic("g", MessageType.DDATA, "e", "cnc-7"), "spBv1.0/g/DDATA/e/cnc-7"),
        (Topic("g", MessageType.DCMD, "e", "cnc-7"), "spBv1.0/g/DCMD/e/cnc-7"),
        (
            Topic("Halle 3", MessageType.DDATA, "Zelle.1", "Fräse_äöü"),
            "spBv1.0/Halle 3/DDATA/Zelle.1/Fräse_äöü",
        ),
        (Topic("STATE", MessageType.NDATA, "e"), "spBv1.0/STATE/NDATA/e"),
    ],
)
def test_build_and_parse_round_trip(topic: Topic, text: str) -> None:
    assert str(topic) == text
    assert parse_topic(text) == topic
    assert str(parse_topic(text)) == text


def test_parsed_message_type_is_enum() -> None:
    topic = parse_topic("spBv1.0/g/DDATA/e/d")
    assert topic.message_type is MessageType.DDATA
    assert topic.device_id == "d"


def test_message_type_from_plain_string_is_normalised() -> None:
    topic = Topic("g", "NDATA", "e")  # type: ignore[arg-type]
    assert topic.message_type is MessageType.NDATA


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "namespace"),
        ("spBv1.0", "4 or 5 elements"),
        ("spAv1.0/g/NDATA/e", "namespace"),
        ("spbv1.0/g/NDATA/e", "namespace"),
        ("/spBv1.0/g/NDATA/e", "namespace"),
        ("spBv1.0/STATE/host", "STATE topic"),
        ("spBv1.0/g", "4 or 5 elements"),
        ("spBv1.0/g/NDATA", "4 or 5 elements"),
        ("spBv1.0/g/DDATA/e/d/extra", "4 or 5 elements"),
        ("spBv1.0/g/NDATA/e/", "must not have a device_id"),
        ("spBv1.0/g/STATE/e", "unknown message type"),
        ("spBv1.0/g/ndata/e", "unknown message type"),
        ("spBv1.0/g/NDATA2/e", "unknown message type"),
        ("spBv1.0/g//e", "unknown message type"),
        ("spBv1.0/g/DDATA/e", "needs a device_id"),
        ("spBv1.0/g/DBIRTH/e", "needs a device_id"),
        ("spBv1.0/g/NDATA/e/d", "must not have a device_id"),
        ("spBv1.0/g/NBIRTH/e/d", "must not have a device_id"),
        ("spBv1.0//NDATA/e", "group_id must not be empty"),
        ("spBv1.0/g/NDATA/", "edge_node_id must not be empty"),
        ("spBv1.0/g/DDATA/e/", "device_id must not be empty"),
        ("spBv1.0/+/NDATA/e", "group_id"),
        ("spBv1.0/#/NDATA/e", "group_id"),
        ("spBv1.0/g/NDATA/+", "edge_node_id"),
        ("spBv1.0/g/NDATA/e#", "edge_node_id"),
        ("spBv1.0/g/DDATA/e/+", "device_id"),
        ("spBv1.0/g/DDATA/e/a#b", "device_id"),
        ("spBv1.0/g/NDATA/e\0", "edge_node_id"),
        ("spBv1.0/#", "4 or 5 elements"),
    ],
)
def test_parse_rejects_invalid_topics(text: str, fragment: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("", MessageType.NDATA, "e", None), "group_id must not be empty"),
        (("g", MessageType.NDATA, "", None), "edge_node_id must not be empty"),
        (("g", MessageType.DDATA, "e", ""), "device_id must not be empty"),
        (("g+", MessageType.NDATA, "e", None), "group_id"),
        (("g", MessageType.NDATA, "e#", None), "edge_node_id"),
        (("g", MessageType.DDATA, "e", "a/b"), "device_id"),
        (("a/b", MessageType.NDATA, "e", None), "group_id"),
        (("g", MessageType.DDATA, "e", None), "needs a device_id"),
        (("g", MessageType.DCMD, "e", None), "needs a device_id"),
        (("g", MessageType.NCMD, "e", "d"), "must not have a device_id"),
        (("g", MessageType.NDEATH, "e", "d"), "must not have a device_id"),
        (("g", "XDATA", "e", None), "unknown message type"),
        (("g", "STATE", "e", None), "unknown message type"),
        ((1, MessageType.NDATA, "e", None), "group_id must be a str"),
        (("g", MessageType.NDATA, None, None), "edge_node_id must be a str"),
    ],
)
def test_topic_constructor_validates(args: tuple[object, ...], fragment: str) -> None:
    with pytest.raises(TopicError) as info:
        Topic(*args)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_topic_is_frozen_and_hashable() -> None:
    topic = Topic("g", MessageType.NDATA, "e")
    with pytest.raises(AttributeError):
        topic.group_id = "other"  # type: ignore[misc]
    assert {topic, Topic("g", MessageType.NDATA, "e")} == {topic}


@pytest.mark.parametrize(
    ("message_type", "is_device"),
    [(t, t.value.startswith("D")) for t in MessageType],
)
def test_device_message_types(message_type: MessageType, is_device: bool) -> None:
    assert message_type.is_device is is_device


def test_message_types_are_the_eight_of_the_spec() -> None:
    assert {t.value for t in MessageType} == {
        "NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("group_id", "expected"),
    [(None, "spBv1.0/#"), ("plant1", "spBv1.0/plant1/#"), ("Halle 3", "spBv1.0/Halle 3/#")],
)
def test_subscription(group_id: str | None, expected: str) -> None:
    assert subscription(group_id) == expected
    assert subscription(group_id).startswith(NAMESPACE + "/")


@pytest.mark.parametrize("group_id", ["", "+", "#", "a/b"])
def test_subscription_rejects_invalid_group(group_id: str) -> None:
    with pytest.raises(TopicError):
        subscription(group_id)


def topic_matches_sub(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching: '+' one level, a last '#' this level and all below."""
    levels, names = pattern.split("/"), topic.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(names) or level not in ("+", names[i]):
            return False
    return len(levels) == len(names)


def test_edge_node_subscriptions_match_exactly_that_node() -> None:
    """Every message of the node and its devices, no one else's (another node, another group,
    a deeper topic, STATE); matched as MQTT 5.0 section 4.7 says (the broker's own matching:
    tests/bus/test_mqtt_subscriptions.py)."""
    filters = edge_node_subscriptions("G", "GW1")
    ours = [str(Topic("G", k, "GW1", "D1" if k.is_device else None)) for k in MessageType]
    others = [
        "spBv1.0/G/NDATA/GW2", "spBv1.0/G/DDATA/GW2/D1", "spBv1.0/H/NDATA/GW1",
        "spBv1.0/G/DDATA/GW1/D1/x", "spBv1.0/STATE/GW1", "spBv1.0/G/NDATA/GW10",
    ]  # fmt: skip
    for topic in ours:
        assert any(topic_matches_sub(f, topic) for f in filters), topic
    for topic in others:
        assert not any(topic_matches_sub(f, topic) for f in filters), topic
    with pytest.raises(TopicError):
        edge_node_subscriptions("G", "a+b")


def test_state_topic() -> None:
    assert state_topic("scada-1") == "spBv1.0/STATE/scada-1"


@pytest.mark.parametrize("host_id", ["", "+", "#", "a/b"])
def test_state_topic_rejects_invalid_host(host_id: str) -> None:
    with pytest.raises(TopicError):
        state_topic(host_id)


@pytest.mark.parametrize(
    ("online", "timestamp"),
    [(True, 0), (False, 1_700_000_000_123), (True, 2**63)],
)
def test_state_round_trip(online: bool, timestamp: int) -> None:
    data = encode_state(online, timestamp)
    assert json.loads(data) == {"online": online, "timestamp": timestamp}
    assert decode_state(data) == (online, timestamp)


def test_state_decode_ignores_extra_keys() -> None:
    assert decode_state(b'{"timestamp": 5, "online": false, "x": 1}') == (False, 5)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"online"',
        b"\xff\xfe",
        b"[" * 100_000,
        b'{"online": true}',
        b'{"timestamp": 1}',
        b'{"online": 1, "timestamp": 1}',
        b'{"online": "true", "timestamp": 1}',
        b'{"online": true, "timestamp": "1"}',
        b'{"online": true, "timestamp": 1.5}',
        b'{"online": true, "timestamp": true}',
        b'{"online": true, "timestamp": -1}',
    ],
)
def test_state_decode_rejects_bad_payloads(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_state(data)


@pytest.mark.parametrize(
    ("online", "timestamp"),
    [(1, 5), ("yes", 5), (True, -1), (True, 1.5), (True, True)],
)
def test_state_encode_rejects_bad_values(online: object, timestamp: object) -> None:
    with pytest.raises(PayloadError):
        encode_state(online, timestamp)  # type: ignore[arg-type]
