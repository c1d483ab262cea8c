"""Sparkplug B 3.0 topic namespace and STATE payloads.

Topics are ``spBv1.0/{group_id}/{message_type}/{edge_node_id}[/{device_id}]``; host
applications publish their state on ``spBv1.0/STATE/{host_id}`` as JSON
``{"online": bool, "timestamp": int}`` (milliseconds since the Unix epoch).
"""

import json
from dataclasses import dataclass
from enum import StrEnum

from plantwire_bus.payload import PayloadError

NAMESPACE = "spBv1.0"
STATE = "STATE"

_FORBIDDEN = ("+", "#", "/", "\0")


class TopicError(ValueError):
    """A topic or topic element is not valid Sparkplug B."""


class MessageType(StrEnum):
    """Sparkplug message types carried in the topic (STATE has its own topic form)."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"

    @property
    def is_device(self) -> bool:
        """True for the D* types, whose topics end with a device id."""
        return self.value.startswith("D")


def _check_element(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TopicError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise TopicError(f"{what} must not be empty")
    for char in _FORBIDDEN:
        if char in value:
            raise TopicError(f"{what} {value!r} must not contain {char!r}")


@dataclass(frozen=True, slots=True)
class Topic:
    """A Sparkplug edge-node or device topic; ``str(topic)`` is the MQTT topic."""

    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None

    def __post_init__(self) -> None:
        _check_element("group_id", self.group_id)
        try:
            message_type = MessageType(self.message_type)
        except ValueError:
            raise TopicError(f"unknown message type {self.message_type!r}") from None
        object.__setattr__(self, "message_type", message_type)
        _check_element("edge_node_id", self.edge_node_id)
        if message_type.is_device:
            if self.device_id is None:
                raise TopicError(f"{message_type} topic needs a device_id")
            _check_element("device_id", self.device_id)
        elif self.device_id is not None:
            raise TopicError(f"{message_type} topic must not have a device_id")

    def __str__(self) -> str:
        base = f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}"
        return base if self.device_id is None else f"{base}/{self.device_id}"


def parse_topic(topic: str) -> Topic:
    """Parse an edge-node or device topic; raises :class:`TopicError` if it is not one."""
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        raise TopicError(f"topic {topic!r} is not in the {NAMESPACE} namespace")
    if len(parts) == 3 and parts[1] == STATE:
        raise TopicError(f"topic {topic!r} is a STATE topic, not an edge-node or device topic")
    if len(parts) not in (4, 5):
        raise TopicError(f"topic {topic!r} must have 4 or 5 elements, has {len(parts)}")
    _, group_id, message_type, edge_node_id, *device = parts
    try:
        kind = MessageType(message_type)
    except ValueError:
        raise TopicError(f"topic {topic!r}: unknown message type {message_type!r}") from None
    try:
        return Topic(group_id, kind, edge_node_id, *device)
    except TopicError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None


def state_topic(host_id: str) -> str:
    """The topic a host application publishes its STATE on."""
    _check_element("host_id", host_id)
    return f"{NAMESPACE}/{STATE}/{host_id}"


def subscription(group_id: str | None = None) -> str:
    """Topic filter for all Sparkplug traffic, or that of one group."""
    if group_id is None:
        return f"{NAMESPACE}/#"
    _check_element("group_id", group_id)
    return f"{NAMESPACE}/{group_id}/#"


def edge_node_subscriptions(group_id: str, edge_node_id: str) -> tuple[str, str]:
    """Topic filters of one edge node's messages (``spBv1.0/{group}/+/{edge_node}``) and of its
    devices' (``…/{edge_node}/+``); they also match its commands."""
    _check_element("group_id", group_id)
    _check_element("edge_node_id", edge_node_id)
    node = f"{NAMESPACE}/{group_id}/+/{edge_node_id}"
    return node, f"{node}/+"


def encode_state(online: bool, timestamp_ms: int, commits: bool = False) -> bytes:
    """STATE payload: ``{"online": ..., "timestamp": ...}`` as UTF-8 JSON; ``commits`` adds
    ``"commits": 1``, plantwire's announcement that this host confirms commits to its edge
    nodes (see :mod:`plantwire_bus.extension`)."""
    if not isinstance(online, bool):
        raise PayloadError(f"online must be a bool, got {type(online).__name__}")
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
        raise PayloadError(f"timestamp {timestamp_ms!r} is not a non-negative int")
    doc: dict[str, object] = {"online": online, "timestamp": timestamp_ms}
    if commits:
        doc["commits"] = 1
    return json.dumps(doc).encode()


def decode_state(data: bytes) -> tuple[bool, int]:
    """Parse a STATE payload into ``(online, timestamp_ms)``; raises :class:`PayloadError`."""
    try:
        state = json.loads(data)
    except (ValueError, TypeError, RecursionError) as exc:
        raise PayloadError(f"STATE payload is not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise PayloadError("STATE payload must be a JSON object")
    online = state.get("online")
    timestamp = state.get("timestamp")
    if not isinstance(online, bool):
        raise PayloadError(f"STATE 'online' must be a bool, got {online!r}")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise PayloadError(f"STATE 'timestamp' must be a non-negative int, got {timestamp!r}")
    return online, timestamp
