"""MQTT device adapter: vendor JSON published by a device to a plant broker, mapped field by
field to metrics with declarative selectors.

A payload that is not JSON, or carries none of the configured fields, is counted and logged
(throttled) and otherwise ignored; nothing a device publishes can stop the adapter.

Liveness. The device is online from its first usable message until the plant broker connection
is lost, its status topic says ``offline_payload`` (a vendor Will/LWT: the broker publishes it
when the device's connection dies), or it has been silent for its silence timeout
(``offline_after_s``, by default three of its publishing intervals ``interval_s``; messages on
``heartbeat_topic`` or ``online_payload`` on the status topic count as signs of life). Silence
is measured on the gateway's clock, so it scales with an accelerated simulation: the adapter
looks at it when it can have run out, at the clock's rate now (a replay that has caught up with
the wall clock runs at 1x, not at its speed), and a lost broker connection wakes it at once. A
silent device is stamped offline one interval after it last spoke (by its own timestamp when it
gives a sane one: when it should have spoken next), not when the timeout noticed it; a device
that speaks again is online as of its message's timestamp, not as of when the gateway got to
it.

Silence is concluded from what the broker had, not from what reached the gateway in time: when
the timeout runs out the adapter publishes a probe on its own topic (``PROBE_PREFIX``, one per
connection) and decides when it comes back. The broker passes a connection's messages on in
order, so whatever the device published before the probe has then been handled: a gateway that
fell behind (a busy CPU, a stalled socket; at 600x a tenth of a wall second is a minute of
the clock) never takes a device that kept publishing for silent. A broker that does not pass
the probe on (its ACL refuses the topic) is told by its silence for ``PROBE_WAIT_S`` wall
seconds; the timeout alone decides on that connection from then on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from plantwire_bus.mqtt import Message, MqttClient, MqttError, parse_mqtt_url
from plantwire_bus.runner import stopped_within
from plantwire_edge.clock import WALL_FLOOR_S, wall_s
from plantwire_edge.devices import MqttDevice
from plantwire_edge.feed import Feed
from plantwire_edge.node import EdgeNode
from plantwire_edge.selector import Missing, Selector, parse_selector
from plantwire_edge.status import AdapterStatus, Throttle
from plantwire_edge.values import ClockCheck

log = logging.getLogger(__name__)

PROBE_PREFIX = "plantwire-edge/probe"
"""The adapter's probe topic is ``{PROBE_PREFIX}/{client id}``."""
PROBE_WAIT_S = 5.0
"""Wall seconds a probe may take to come back before the broker is taken not to pass it on
(shorter than the two keep-alive periods in which a dead broker connection is noticed)."""
CHECK_MAX_S = 1.0
"""Wall seconds the adapter waits at most before it looks at the device's silence again."""


class TimestampError(ValueError):
    """A device timestamp that does not match the declared format."""


def parse_timestamp(raw: object, fmt: str) -> int:
    """Milliseconds since the epoch from a device timestamp in format ``fmt``."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            raise TimestampError(f"{raw!r} is not an ISO 8601 string")
        try:
            when = datetime.fromisoformat(raw)
        except ValueError:
            raise TimestampError(f"{raw!r} is not an ISO 8601 timestamp") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return round(when.timestamp() * 1000)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise TimestampError(f"{raw!r} is not a number of {fmt}")
    try:
        return (
            int(raw)
            if fmt == "epoch_ms" and isinstance(raw, int)
            else round(raw * (1000 if fmt == "epoch_s" else 1))
        )
    except OverflowError:
        raise TimestampError(f"{raw!r} is out of range") from None


class MqttDeviceAdapter:
    def __init__(self, device: MqttDevice, node: EdgeNode) -> None:
        self.device = device
        self.status = AdapterStatus(device.device_id, "mqtt")
        self.connected = asyncio.Event()
        self.channel = node.channel(device.device_id)
        self.clock = node.clock
        self._throttle = Throttle()
        self._sanity = ClockCheck(
            int(device.max_clock_skew_s * 1000), int(device.max_age_days * 86_400_000)
        )
        self.fields: list[tuple[Selector, Feed]] = [
            (parse_selector(f.path), Feed(self.channel, f, f.path, self.status, self._throttle))
            for f in device.fields
        ]
        self.timestamp = (
            parse_selector(device.timestamp_path) if device.timestamp_path is not None else None
        )
        self._last_seen_ms = 0  # gateway clock at the last sign of life
        self._spoke_ms = 0  # when the device last spoke: its own timestamp, if it gives one
        self._had_data = False
        self.topics = [t for t in (device.topic, device.heartbeat_topic, device.status_topic) if t]
        self.client_id = f"plantwire-edge-{device.device_id}-{uuid.uuid4().hex[:8]}"
        self.probe_topic = f"{PROBE_PREFIX}/{self.client_id}"
        self._client: MqttClient | None = None
        self._probe: tuple[str, float] | None = None  # the probe out: (payload, wall sent)
        self.probes = 0
        self._probing = True  # False once the broker did not pass a probe on
        self._answered = False  # whether a probe ever came back

    async def run(self, stop: asyncio.Event) -> None:
        dev = self.device
        client_id = self.client_id
        delay = 0.5
        while not stop.is_set():
            client = MqttClient(parse_mqtt_url(dev.broker_url), client_id)
            try:
                await client.connect()
                for topic in self.topics:
                    await client.subscribe(topic, qos=1)
                await self._subscribe_probe(client)
            except (MqttError, TimeoutError) as exc:
                self.status.set_state("disconnected", str(exc))
                self._throttle(log, "connect", "%s: %s", dev.device_id, exc)
                await client.disconnect()
                self.status.reconnects += 1
                await stopped_within(stop, wall_s(self.clock, delay))  # clock time
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.5
            self.status.connects += 1
            self._client = client
            try:
                await self._listen(client, stop)
            finally:
                self._client = self._probe = None
                await client.disconnect()
        self.channel.set_offline()
        self.connected.clear()
        if self.status.state == "connected":
            self.status.set_state("disconnected")

    async def _listen(self, client: MqttClient, stop: asyncio.Event) -> None:
        """Handle messages until ``stop``; presence follows the broker connection (paho
        reconnects and resubscribes by itself; a change wakes the loop at once) and the
        device's silence (looked at when it can have run out: :meth:`_check_wait`)."""
        changed = asyncio.Event()
        client.on_connect.append(changed.set)
        client.on_disconnect.append(changed.set)
        stopper = asyncio.ensure_future(stop.wait())
        getter: asyncio.Future[Message] | None = None
        watcher: asyncio.Future[Any] | None = None
        try:
            while not stop.is_set():
                changed.clear()
                if client.connected.is_set():
                    self.status.set_state("connected")
                    self.connected.set()
                else:
                    self.status.set_state("disconnected", "plant broker connection lost")
                    self.connected.clear()
                    self.channel.set_offline()
                if getter is None:
                    getter = asyncio.ensure_future(client.next_message())
                if watcher is None:
                    watcher = asyncio.ensure_future(changed.wait())
                waiting: set[asyncio.Future[Any]] = {getter, stopper, watcher}
                done, _ = await asyncio.wait(
                    waiting, timeout=self._check_wait(), return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    self.handle(getter.result())
                    getter = None
                if watcher in done:
                    watcher = None
                self.check_silence()
        finally:
            stopper.cancel()
            for waiter in (getter, watcher):
                if waiter is not None:
                    waiter.cancel()

    def _check_wait(self) -> float:
        """Wall seconds until the silence timeout can run out: the rest of it on the gateway's
        clock, at the clock's rate now (:func:`~plantwire_edge.clock.wall_s`: a replay that
        has caught up runs at 1, not at its speed), or the rest of a probe's wall wait; at
        least ``WALL_FLOOR_S`` (a clock held by its simulator does not spin the loop) and at
        most ``CHECK_MAX_S`` (a clock whose rate changes is looked at again within that)."""
        silence = self.device.silence_s
        if silence is None or not self.channel.online:
            left = CHECK_MAX_S
        elif self._probe is not None:  # its return wakes the loop: only its timeout is due
            left = PROBE_WAIT_S - (time.monotonic() - self._probe[1])
        else:
            due_ms = self._last_seen_ms + round(silence * 1000) + 1  # silent *longer* than it
            left = wall_s(self.clock, max(0, due_ms - self.clock.now_ms()) / 1000)
        return min(CHECK_MAX_S, max(WALL_FLOOR_S, left))

    async def _subscribe_probe(self, client: MqttClient) -> None:
        if self.device.silence_s is None or not self._probing:
            return
        try:
            await client.subscribe(self.probe_topic, qos=1)
        except MqttError as exc:  # the broker's ACL refuses it: the timeout alone decides
            log.info(
                "%s: no probe (%s): silence judged by the timeout alone", self.device.device_id, exc
            )
            self._probing = False

    def check_silence(self) -> None:
        """Take the device offline when it has been silent for its silence timeout, as the
        broker's answer to a probe confirms (see the module docstring)."""
        silence = self.device.silence_s
        if silence is None or not self.channel.online:
            return
        now = self.clock.now_ms()
        if now - self._last_seen_ms <= silence * 1000:
            return
        client = self._client
        if self._probing and client is not None and client.connected.is_set():
            if self._probe is None:
                self.probes += 1
                payload = f"{self.probes} {now}"
                self._probe = (payload, time.monotonic())
                fut = client.publish_nowait(self.probe_topic, payload.encode(), qos=1)
                fut.add_done_callback(self._probe_published)
                return
            if time.monotonic() - self._probe[1] < PROBE_WAIT_S:
                return
            if not self._answered:
                log.warning(
                    "%s: the broker did not pass the probe on %s on within %g s: silence "
                    "judged by the timeout alone",
                    self.device.device_id,
                    self.probe_topic,
                    PROBE_WAIT_S,
                )
                self._probing = False
            self._probe = None
        self._offline(now)

    def _probe_published(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        if self._probe is not None and isinstance(fut.exception(), MqttError):
            log.warning("%s: probe refused (%s): silence judged by the timeout alone",
                        self.device.device_id, fut.exception())  # fmt: skip
            self._probing = False
            self._probe = None
            self.check_silence()

    def _probe_back(self, message: Message) -> None:
        """A probe came back: everything published before it has been handled."""
        text = message.payload.decode("ascii", errors="replace")
        if self._probe is None or text != self._probe[0]:
            return  # an earlier connection's
        self._probe = None
        self._answered = True
        silence = self.device.silence_s
        sent = int(text.partition(" ")[2])
        if (
            silence is not None
            and self.channel.online
            and sent - self._last_seen_ms > silence * 1000
        ):
            self._offline(sent)

    def _offline(self, now: int) -> None:
        dev = self.device
        log.info("%s: silent for %g s: offline", dev.device_id, dev.silence_s)
        due = self._spoke_ms + round((dev.interval_s or 0) * 1000)
        self.channel.set_offline(min(now, due))

    def _alive(self, spoke_ms: int | None = None) -> None:
        self._last_seen_ms = self.clock.now_ms()
        self._spoke_ms = self._last_seen_ms if spoke_ms is None else spoke_ms
        if self._had_data and not self.channel.online:  # back as of when it spoke
            self.channel.set_online([], self._spoke_ms)

    def handle(self, message: Message) -> None:
        """Map one payload to values (or to presence, on the heartbeat and status topics);
        anything malformed is counted, logged and skipped."""
        dev = self.device
        if message.topic == self.probe_topic:
            self._probe_back(message)
            return
        try:
            if dev.status_topic is not None and topic_matches(dev.status_topic, message.topic):
                self._status(message)
            elif dev.heartbeat_topic is not None and topic_matches(
                dev.heartbeat_topic, message.topic
            ):
                self._alive()
            else:
                spoke: int | None = None
                try:
                    spoke = self._handle(message)
                finally:  # even a malformed message shows the device is there
                    self._alive(spoke)
        except Exception as exc:  # noqa: BLE001 - nothing a device sends may stop the adapter
            self._malformed(message.topic, f"{type(exc).__name__}: {exc}")

    def _handle(self, message: Message) -> int | None:
        """Map the values; the device's timestamp of the message when it gave a sane one."""
        dev = self.device
        try:
            document = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._malformed(message.topic, f"not JSON: {exc}")
            return None
        now = self.clock.now_ms()
        ts: int | None = None  # the device's own timestamp (None: stamped by the gateway)
        problem = ""
        if self.timestamp is not None:
            try:
                ts = parse_timestamp(self.timestamp.select(document), dev.timestamp_format)
            except (Missing, TimestampError) as exc:
                problem = f"timestamp: {exc}; using gateway time"
        low, high = self._sanity.bounds(now)
        found = 0
        for selector, feed in self.fields:
            try:
                native = selector.select(document)
            except Missing:
                continue
            if isinstance(native, dict | list):
                self.status.rejected += 1
                self._throttle(
                    log,
                    f"shape:{feed.label}",
                    "%s: %s selects a %s, not a value",
                    dev.device_id,
                    feed.label,
                    type(native).__name__,
                )
                continue
            found += 1
            feed.put(native, ts, now, low, high)
        if not found:
            self._malformed(message.topic, "none of the configured fields is present")
            return None
        if problem:
            self._malformed(message.topic, problem)
        self._had_data = True
        if problem:
            return None
        if ts is None:
            return now
        if not low <= ts <= high:
            return None
        clock = self.status.clock  # on the gateway's time line, as the values are
        return ts if clock is None else clock.corrected(ts, now)

    def _status(self, message: Message) -> None:
        dev = self.device
        text = message.payload.decode("utf-8", errors="replace").strip()
        if text == dev.offline_payload:
            if self.channel.online:
                log.info("%s: %s says %r: offline", dev.device_id, message.topic, text)
            self.channel.set_offline()
        elif text == dev.online_payload:
            self._alive()
        else:
            self._malformed(
                message.topic,
                f"status {text[:40]!r} is neither {dev.online_payload!r} nor "
                f"{dev.offline_payload!r}",
            )

    def _malformed(self, topic: str, why: str) -> None:
        self.status.malformed += 1
        self._throttle(
            log,
            f"malformed:{why[:20]}",
            "%s: malformed payload on %s: %s",
            self.device.device_id,
            topic,
            why,
        )


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches a subscription ``pattern`` whose wildcards are whole ``+``
    levels (the gateway config allows no ``#``)."""
    levels, wanted = topic.split("/"), pattern.split("/")
    return len(levels) == len(wanted) and all(
        w == "+" or w == level for w, level in zip(wanted, levels, strict=True)
    )
