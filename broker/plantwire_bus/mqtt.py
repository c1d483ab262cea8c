"""MQTT for asyncio: the only module in plantwire that imports paho-mqtt.

paho runs its network loop in its own thread; this module hands its callbacks to the asyncio
loop. Publishing at QoS 1 returns only after the broker's PUBACK, so callers can delete from a
buffer safely. Received messages wait in a bounded queue: when it is full the network thread
blocks, which pushes back on the broker instead of dropping anything. With ``manual_ack`` a
QoS 1 message is acknowledged only when the caller says so (after its database commit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


FILTERS_PER_PACKET = 500
"""Topic filters in one SUBSCRIBE or UNSUBSCRIBE packet (well within any broker's maximum
packet size: a Sparkplug filter is a few dozen bytes)."""


class MqttError(RuntimeError):
    """The broker could not be reached or refused an operation."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    mqtt5: bool = True  # False: MQTT 3.1.1, for brokers without v5 (``?protocol=3.1.1``)
    ca_file: str | None = None  # TLS: trust this CA (e.g. the platform's private one)
    cert_file: str | None = None  # TLS: client certificate, when the broker asks for one
    key_file: str | None = None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:password]@]host[:port][?protocol=5|3.1.1]``; ``mqtts://`` is TLS,
    optionally with ``cafile=``, ``certfile=`` and ``keyfile=`` (paths) in the query."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        hint = {"tcp": "mqtt://", "ssl": "mqtts://", "tls": "mqtts://"}.get(parts.scheme)
        raise ValueError(
            f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts:// (TLS)"
            + (f"; for {parts.scheme}:// write {hint}" if hint else "")
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"protocol", *_TLS_FILES})
    if unknown:
        raise ValueError(
            f"MQTT URL {url!r}: unknown parameter {unknown[0]!r} (protocol, cafile, certfile, "
            "keyfile)"
        )
    files = {name: query[name][-1] for name in _TLS_FILES if name in query}
    if files and parts.scheme != "mqtts":
        raise ValueError(f"MQTT URL {url!r}: {min(files)} needs TLS (mqtts://)")
    if ("certfile" in files) != ("keyfile" in files):
        raise ValueError(f"MQTT URL {url!r}: certfile and keyfile go together")
    protocol = query.get("protocol", ["5"])[-1]
    if protocol not in ("5", "3.1.1"):
        raise ValueError(f"MQTT URL {url!r}: protocol must be 5 or 3.1.1")
    if not parts.hostname:
        raise ValueError(f"MQTT URL {url!r}: no host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError(f"MQTT URL {url!r}: the port must be 1..65535") from None
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
        mqtt5=protocol == "5",
        ca_file=files.get("cafile"),
        cert_file=files.get("certfile"),
        key_file=files.get("keyfile"),
    )


_TLS_FILES = ("cafile", "certfile", "keyfile")


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes when this client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A received message; pass it to :meth:`MqttClient.ack` under manual acknowledgement."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


class MqttClient:
    """An MQTT v5 client for asyncio code.

    A broker that stops answering (frozen, or its host gone without a FIN) is noticed within
    two ``keepalive`` periods (8 s by default): a PINGREQ after one period of silence, the
    connection dropped when the next period passes without a byte from the broker.

    ``session_expiry`` > 0 with ``clean_start=False`` keeps the broker-side session (and its
    queued QoS 1 messages) across disconnects.

    ``will_factory``, if given, makes the Will of every CONNECT packet just before it is sent,
    the automatic reconnects' included (it runs in the network thread). With
    ``reconnect=False`` a lost connection stays lost: the caller makes a new client (the edge
    node, whose every CONNECT packet carries the next bdSeq).
    """

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        will: Will | None = None,
        will_factory: Callable[[], Will] | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
        manual_ack: bool = False,
        queue_size: int = 10_000,
        max_inflight: int = 200,
        keepalive: int = 4,
        reconnect: bool = True,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._keepalive = keepalive
        self._manual_ack = manual_ack
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._slots = threading.BoundedSemaphore(queue_size)
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early_acks: collections.deque[int] = collections.deque(maxlen=4096)
        self._subscriptions: dict[str, int] = {}
        self._unsubscribing: set[str] = set()  # not yet confirmed by an UNSUBACK
        self._sub_waiters: dict[int, asyncio.Future[None]] = {}
        self._closing = False
        self.connected = asyncio.Event()
        self._answered = asyncio.Event()  # CONNACK received, success or refusal
        self.refusal: str | None = None  # the reason of the last refused connect
        self.connect_sent = False  # whether connect() got as far as sending CONNECT
        self.on_connect: list[Callable[[], None]] = []
        self.on_disconnect: list[Callable[[], None]] = []
        self.reconnects = 0
        self._held_lock = threading.Lock()  # its own: paho may hold its locks around callbacks
        self._held = 0  # QoS 1 messages received under manual_ack and not acknowledged yet
        self.last_activity = 0.0  # monotonic time of the last message received or acknowledged

        if address.mqtt5:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv5,
                manual_ack=manual_ack,
                reconnect_on_failure=reconnect,
            )
        else:
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv311,
                manual_ack=manual_ack,
                clean_session=clean_start,
                reconnect_on_failure=reconnect,
            )
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        if address.username is not None:
            client.username_pw_set(address.username, address.password)
        if address.tls:
            client.tls_set(
                ca_certs=address.ca_file, certfile=address.cert_file, keyfile=address.key_file
            )
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if will_factory is not None:

            def fresh_will(client: paho.Client, userdata: Any) -> None:
                made = will_factory()
                client.will_set(made.topic, made.payload, qos=made.qos, retain=made.retain)

            client.on_pre_connect = fresh_will
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_subscribe = self._handle_subscribe
        client.on_unsubscribe = self._handle_subscribe
        self._client = client

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and start the network thread; raises :class:`MqttError` on failure."""
        self._loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"keepalive": self._keepalive}
        if self.address.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry
            kwargs.update(clean_start=self._clean_start, properties=props)
        try:
            await asyncio.to_thread(
                self._client.connect, self.address.host, self.address.port, **kwargs
            )
        except OSError as exc:
            raise MqttError(f"cannot reach MQTT broker {self.address}: {exc}") from exc
        self.connect_sent = True  # paho has sent the CONNECT packet
        self.refusal = None
        self._answered.clear()
        self._client.loop_start()
        try:
            await asyncio.wait_for(self._answered.wait(), timeout)
        except TimeoutError as exc:
            self._client.loop_stop()
            raise MqttError(f"MQTT broker {self.address} did not accept the connection") from exc
        if not self.connected.is_set():
            await asyncio.to_thread(self._client.loop_stop)
            raise MqttError(f"MQTT broker {self.address} refused the connection: {self.refusal}")

    async def disconnect(self, with_will: bool = False, end_session: bool = False) -> None:
        """Disconnect cleanly and stop the network thread. No Will is published, unless
        ``with_will`` (MQTT 5.0: reason code 'Disconnect with Will Message'). With
        ``end_session`` (MQTT 5.0) the DISCONNECT sets the Session Expiry Interval to 0: the
        broker discards the session, its subscriptions and what it queued for it, whatever
        expiry the connection was made with."""
        self._closing = True
        kwargs: dict[str, Any] = {}
        if self.address.mqtt5:
            if with_will:
                kwargs["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=4)
            if end_session:
                props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 0
                kwargs["properties"] = props
        self._client.disconnect(**kwargs)
        await asyncio.to_thread(self._client.loop_stop)
        self.connected.clear()
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(MqttError("client disconnected before PUBACK"))

    async def reconnect(self, timeout: float = 10.0) -> None:
        """Disconnect cleanly (the broker publishes no Will) and connect again: a new CONNECT
        packet, with a Will made anew by ``will_factory``. The session, subscriptions and
        publishes awaiting their PUBACK carry over as on any reconnect."""
        self._closing = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._closing = False
        self.connected.clear()
        await self.connect(timeout)

    async def __aenter__(self) -> MqttClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    def drop_connection(self) -> None:
        """Cut the connection without DISCONNECT so the broker publishes the Will (tests).

        The socket is shut down, not closed: paho's network thread is blocked in select() on
        it, and a shutdown wakes it with end-of-file (connection lost, reconnect with backoff)
        where a close from this thread could leave it waiting on a dead descriptor."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):  # plain TCP or TLS (ssl.SSLSocket is one too)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def set_will(self, will: Will) -> None:
        """Replace the Will used by the next (re)connect."""
        self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    # -- publishing ------------------------------------------------------------------------
    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a publish; the future completes on PUBACK (QoS 1) or once sent (QoS 0)."""
        loop = self._require_loop()
        fut: asyncio.Future[None] = loop.create_future()
        # paho calls on_publish holding its own message lock, so publish() must not run under
        # self._lock (lock-order inversion); a PUBACK that beats the registration below is
        # kept in _early_acks.
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            fut.set_exception(MqttError(f"publish to {topic} failed: rc={info.rc}"))
            return fut
        if qos == 0 and info.rc == paho.MQTT_ERR_SUCCESS:
            fut.set_result(None)
            return fut
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.remove(info.mid)
                fut.set_result(None)
            else:
                self._pending[info.mid] = fut
        return fut

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1)."""
        await self.publish_nowait(topic, payload, qos, retain)

    def _handle_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Properties
    ) -> None:
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None:
                self._early_acks.append(mid)
                return
        failed = rc.is_failure
        self._call_soon(
            _settle, fut, MqttError(f"broker refused publish: {rc}") if failed else None
        )

    # -- subscribing -----------------------------------------------------------------------
    async def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe (again after every reconnect) and wait for the SUBACK."""
        await self.subscribe_all((topic,), qos)

    async def subscribe_all(self, topics: Iterable[str], qos: int = 1) -> None:
        """Subscribe to every filter of ``topics`` (again after every reconnect), at most
        :data:`FILTERS_PER_PACKET` in one SUBSCRIBE packet, and wait for the SUBACKs."""
        topics = list(topics)
        for topic in topics:
            self._subscriptions[topic] = qos
            self._unsubscribing.discard(topic)
        await self._request(topics, qos)

    async def unsubscribe(self, topics: Iterable[str]) -> None:
        """Unsubscribe from ``topics`` and wait for the UNSUBACKs. Not connected, it is sent
        at the next connect (a persistent session keeps its subscriptions meanwhile)."""
        topics = list(topics)
        for topic in topics:
            self._subscriptions.pop(topic, None)
            self._unsubscribing.add(topic)
        await self._unsubscribe(topics)

    async def _unsubscribe(self, topics: list[str]) -> None:
        await self._request(topics, None)
        self._unsubscribing.difference_update(topics)

    async def _request(self, topics: list[str], qos: int | None) -> None:
        """SUBSCRIBE (``qos`` given) or UNSUBSCRIBE packets for ``topics``, in chunks."""
        loop = self._require_loop()
        waiters = []
        for i in range(0, len(topics), FILTERS_PER_PACKET):
            chunk = topics[i : i + FILTERS_PER_PACKET]
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:
                if qos is None:
                    rc, mid = self._client.unsubscribe(chunk)
                else:
                    rc, mid = self._client.subscribe([(t, qos) for t in chunk])
                if rc != paho.MQTT_ERR_SUCCESS or mid is None:
                    what = "subscribe to" if qos is not None else "unsubscribe from"
                    raise MqttError(f"{what} {chunk[0]} failed: rc={rc}")
                self._sub_waiters[mid] = fut
            waiters.append(fut)
        await asyncio.wait_for(asyncio.gather(*waiters), 10)

    def _handle_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        codes: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        """SUBACK and UNSUBACK (MQTT 3.1.1: no reason codes in an UNSUBACK)."""
        with self._lock:
            fut = self._sub_waiters.pop(mid, None)
        if fut is None:
            return
        bad = [c for c in codes if c.is_failure]
        self._call_soon(_settle, fut, MqttError(f"subscription refused: {bad[0]}") if bad else None)

    # -- receiving -------------------------------------------------------------------------
    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._slots.acquire()  # blocks the network thread when the consumer falls behind
        with self._held_lock:
            if self._manual_ack and msg.qos > 0:
                self._held += 1
            self.last_activity = time.monotonic()
        message = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid)
        self._call_soon(self._queue.put_nowait, message)

    async def next_message(self) -> Message:
        message = await self._queue.get()
        self._slots.release()
        return message

    def next_message_nowait(self) -> Message | None:
        try:
            message = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        self._slots.release()
        return message

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            yield await self.next_message()

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message received under ``manual_ack``."""
        if self._manual_ack and message.qos > 0:
            self._client.ack(message.mid, message.qos)
            with self._held_lock:
                self._held -= 1
                self.last_activity = time.monotonic()

    @property
    def held(self) -> int:
        """QoS 1 messages received under ``manual_ack`` and not acknowledged yet: what the
        broker's session would lose if it ended now."""
        with self._held_lock:
            return self._held

    # -- connection events -----------------------------------------------------------------
    def _handle_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            self._call_soon(self._after_refusal, str(rc))
            return
        self._call_soon(self._after_connect)

    def _after_refusal(self, reason: str) -> None:
        if self._answered.is_set():  # a reconnect, retried by paho with backoff (1 s to 10 s)
            log.warning("MQTT broker %s refused the connection: %s", self.address, reason)
        self.refusal = reason
        self._answered.set()

    def _after_connect(self) -> None:
        self._answered.set()
        if self.connected.is_set():
            return
        self.connected.set()
        loop = self._require_loop()
        if self._subscriptions or self._unsubscribing:  # a reconnect: the session may be lost
            by_qos: dict[int, list[str]] = {}
            for topic, qos in self._subscriptions.items():
                by_qos.setdefault(qos, []).append(topic)
            requests = [self._request(topics, qos) for qos, topics in by_qos.items()]
            if self._unsubscribing:
                requests.append(self._unsubscribe(sorted(self._unsubscribing)))
            for request in requests:
                loop.create_task(request).add_done_callback(_observed)
        for hook in self.on_connect:
            hook()

    def _handle_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if not self._closing and self.connected.is_set():  # not after a refused connect
            log.warning("MQTT connection to %s lost: %s", self.address, rc)
        self._call_soon(self._after_disconnect)

    def _after_disconnect(self) -> None:
        if not self.connected.is_set():
            return
        self.connected.clear()
        self.reconnects += 1
        for hook in self.on_disconnect:
            hook()

    # -- plumbing --------------------------------------------------------------------------
    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(fn, *args)


def _observed(future: asyncio.Future[None]) -> None:
    """A resubscription after a reconnect that failed: the connection is gone again, and the
    next reconnect subscribes once more."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.info("resubscription not confirmed: %s", exc)


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
