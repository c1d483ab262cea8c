"""OPC UA adapter: subscriptions (or polling) of a device's variables, reported to the node.

Each session: connect (security policy, certificates, user/password), read the server's
operation limits, resolve every tag's namespace URI to this session's index, create the
monitored items in batches the server accepts, then stream notifications. Notifications are
handled per publish response, not per item, which keeps the cost per value low. A tag the
server refuses (unknown node, bad filter) is reported and left out; the others flow. Losing
the server (keep-alive watchdog, stale subscription, closed socket) reports the device
offline and reconnects; a subscription the server still holds is taken over with its queue
(:mod:`plantwire_edge.opcua_subscription`), else a new one is created and the values written
while none existed are read from the server's history where it keeps one
(:mod:`plantwire_edge.opcua_history`). A rejected user or certificate is an error that needs
a person, not a retry storm: it is logged plainly and retried only every few minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes

from plantwire_bus.runner import stopped_within
from plantwire_edge.clock import next_poll, wall_s
from plantwire_edge.devices import OpcUaDevice, Tag
from plantwire_edge.feed import Feed
from plantwire_edge.node import EdgeNode
from plantwire_edge.opcua_history import NoHistory, read_since
from plantwire_edge.opcua_publish import Reading, reading
from plantwire_edge.opcua_session import AuthError, OperationLimits, connect
from plantwire_edge.opcua_subscription import LIVENESS_MIN_S, Memo, Notifications, take_over
from plantwire_edge.status import AdapterStatus, Throttle
from plantwire_edge.values import ClockCheck

log = logging.getLogger(__name__)

AUTH_RETRY_S = 300.0
KEEPALIVE_MS = 2_000  # the server sends an empty publish response at least this often
LIVENESS_KEEPALIVES = 5  # a subscription silent for this many keep-alive periods is dead
SESSION_SAVE_S = 10.0  # how often the resumable session's state is refreshed on disk
CHECK_S = 1.0  # how often the session loop looks at liveness (a lost connection wakes it)
RETRY_S = 0.5  # the first retry after a failed or lost session (then doubled, jittered)
REFUSED_RETRY_S = 0.1  # a server not listening (restarting) is tried again this often
LIFETIME_S = 120.0  # the server keeps our subscription (and its queues) this long unserved
BACKFILL_TIMEOUT_S = 60.0  # reading the gap from the server's history takes at most this
HORIZON_S = 10.0  # live values older than the history read are dropped this long after it


class _Feed(Feed):
    __slots__ = ("tag", "timestamp")

    def __init__(self, tag: Tag, device: OpcUaDevice, *args: Any) -> None:
        super().__init__(*args)
        self.tag = tag
        self.timestamp = tag.timestamp or device.timestamp


class OpcUaAdapter:
    def __init__(self, device: OpcUaDevice, node: EdgeNode, client_uri: str = "") -> None:
        self.device = device
        self.node = node
        self.client_uri = client_uri or f"urn:plantwire:edge:{device.device_id}"
        self.status = AdapterStatus(device.device_id, "opcua")
        self.connected = asyncio.Event()
        self.limits = OperationLimits()
        self.channel = node.channel(device.device_id)
        self.clock = node.clock
        self._throttle = Throttle()
        self._sanity = ClockCheck(
            int(device.max_clock_skew_s * 1000), int(device.max_age_days * 86_400_000)
        )
        self.feeds = [
            _Feed(tag, device, self.channel, tag, tag.node, self.status, self._throttle)
            for tag in device.tags
        ]
        self._active: list[_Feed | None] = []  # by client handle
        self._nodeids: list[Any] = []
        self._first: set[int] = set()
        self._initial = asyncio.Event()  # set once every subscribed tag had its first value
        self._polled: dict[int, tuple[Any, Any]] = {}
        self._polled_handles: set[int] = set()
        self._last = [-1] * len(self.feeds)  # by client handle: the last value's time (ms)
        self._horizon: dict[int, int] = {}  # by handle: values up to here came from history
        self._horizon_until = 0.0

    @property
    def reconnects(self) -> int:
        return self.status.reconnects

    @property
    def rejected(self) -> int:
        return self.status.rejected

    async def run(self, stop: asyncio.Event) -> None:
        """Sessions one after the other until ``stop``. Retries and their back-off are in
        the gateway clock's time (:func:`~plantwire_edge.clock.wall_s`): on a simulation's
        clock at 600x a server that comes back is tried again within a simulated
        ``REFUSED_RETRY_S``, not a wall one (a minute of simulated time). A refused login
        waits ``AUTH_RETRY_S`` wall seconds (for a person)."""
        delay = RETRY_S
        dev = self.device
        while not stop.is_set():
            retry = delay * random.uniform(0.5, 1.0)
            connects = self.status.connects
            try:
                await self._session(stop)
                delay = RETRY_S
            except asyncio.CancelledError:
                raise
            except ConnectionRefusedError as exc:  # nobody listens: try again soon, cheaply
                self.status.set_state("disconnected", f"{dev.endpoint}: {exc.strerror}")
                self._throttle(log, "refused", "%s: %s: connection refused", dev.device_id,
                               dev.endpoint)  # fmt: skip
                retry, delay = REFUSED_RETRY_S, RETRY_S
            except AuthError as exc:
                self.status.set_state("auth_failed", str(exc))
                log.error("%s: %s; not retrying for %.0f s", dev.device_id, exc, AUTH_RETRY_S)
                retry = AUTH_RETRY_S
            except Exception as exc:  # noqa: BLE001 - any failure: report, back off, retry
                text = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self.status.set_state("disconnected", text)
                self._throttle(log, "session", "%s: %s: %s", dev.device_id, dev.endpoint, text)
                if self.status.connects > connects:  # a session that ran was lost: the back-off
                    retry, delay = RETRY_S * random.uniform(0.5, 1.0), RETRY_S  # starts again
            self.connected.clear()
            self.channel.set_offline()
            if stop.is_set():
                break
            self.status.reconnects += 1
            # a person fixes credentials in wall time; the rest is retried in clock time
            wait = retry if self.status.state == "auth_failed" else wall_s(self.clock, retry)
            await stopped_within(stop, wait)
            delay = min(delay * 2, dev.reconnect_max_s)
        if self.status.state == "connected":
            self.status.set_state("disconnected")

    async def _session(self, stop: asyncio.Event) -> None:
        dev = self.device
        reached = self.clock.now_ms()  # a connection accepted now: the server is back since
        client = await connect(dev, self.client_uri, self._session_file)
        self.channel.set_connecting()  # its first values wait for its birth (set_online)
        try:
            self.limits = await OperationLimits.read(client)
            handles = await self._resolve(client)
            self._first = set(handles)
            self._initial.clear()
            subscribed = [h for h in handles if self._mode(h) == "subscribe"]
            polled = [h for h in handles if self._mode(h) == "poll"]
            self._polled_handles = set(polled)
            sub = await self._subscription(client, subscribed) if subscribed else None
            if sub is not None and sub.gate is not None:
                await self._backfill(client, sub.gate, subscribed)
            self._first -= {h for h in subscribed if self._active[h] is None}
            if not self._first - self._polled_handles:
                self._initial.set()
            self.status.connects += 1
            self.status.set_state("connected")
            self.connected.set()
            log.info(
                "%s: connected to %s (%d tags subscribed, %d polled, %d bad)",
                dev.device_id,
                dev.endpoint,
                len(subscribed),
                len(polled),
                len(self.status.bad_points),
            )
            loop = asyncio.get_running_loop()
            if self._first - set(polled):  # the first notification carries initial values
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._initial.wait(), dev.timeout_s)
            self._polled = {}
            if polled:
                await self._poll(client, polled)
            # online as of the attempt that reached it: opening the session, taking over its
            # subscription and reading its history take a few wall ms (at 600x, a minute)
            self.channel.set_online([], at_ms=reached)
            self._first.clear()
            poll_due = next_poll(self.clock, dev.poll_interval_ms, None, loop.time())
            next_save = loop.time() + SESSION_SAVE_S
            lost = asyncio.Event()  # asyncua found the connection closed or dead: at once
            client.connection_lost_callback = _setter(lost)
            wake = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
            while not stop.is_set():
                wait = min(CHECK_S, max(0.0, poll_due - loop.time())) if polled else CHECK_S
                await asyncio.wait(wake, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                await client.check_connection()  # raises once asyncua found it closed or dead
                if loop.time() >= next_save:  # asyncua forgets a saved session older than
                    next_save = loop.time() + SESSION_SAVE_S  # its timeout: keep it fresh
                    client._save_session_state()
                if self._horizon and loop.time() > self._horizon_until:
                    self._horizon.clear()
                if sub is not None and self._stale(sub):
                    raise ConnectionError("no publish response within the keep-alive time")
                if polled and loop.time() >= poll_due:
                    poll_due = next_poll(self.clock, dev.poll_interval_ms, poll_due, loop.time())
                    await self._poll(client, polled)
        except BaseException:
            for waiter in wake:
                waiter.cancel()
            # leave the session and its subscription to the server, to be taken over by the
            # next session within their lifetime: drop only the connection
            client.uaclient.request_disconnect()
            publishing = client.uaclient.session._publish_task  # no public way to stop it
            if publishing is not None:  # without closing the session on the server
                publishing.cancel()
            client.disconnect_socket()
            raise
        else:  # told to stop: close the session (and its subscription) properly
            for waiter in wake:
                waiter.cancel()
            try:
                await asyncio.wait_for(client.disconnect(), 2)
            except Exception:  # the server may be gone already
                log.debug("%s: disconnect failed", dev.device_id, exc_info=True)

    def _mode(self, handle: int) -> str:
        return self.feeds[handle].tag.mode or self.device.mode

    def _stale(self, sub: Notifications) -> bool:
        """No publish response (data or keep-alive) for LIVENESS_KEEPALIVES keep-alive
        periods as negotiated with the server (and at least LIVENESS_MIN_S)."""
        last = sub.last_publish_at
        return last is not None and time.monotonic() - last > sub.liveness_s

    async def _resolve(self, client: Client) -> list[int]:
        """Handles (indexes) of the tags whose namespace this server knows."""
        namespaces: list[str] = await client.get_namespace_array()
        index = {uri: i for i, uri in enumerate(namespaces)}
        self._active = [None] * len(self.feeds)
        self._nodeids = [None] * len(self.feeds)
        handles = []
        for handle, feed in enumerate(self.feeds):
            uri, _, rest = feed.tag.node.removeprefix("nsu=").partition(";")
            if uri not in index:
                self.status.bad(feed.label, f"namespace {uri!r} not on this server", log)
                continue
            try:
                self._nodeids[handle] = ua.NodeId.from_string(f"ns={index[uri]};{rest}")
            except Exception as exc:  # noqa: BLE001 - one bad tag must not stop the others
                self.status.bad(feed.label, f"invalid node id: {exc}", log)
                continue
            self._active[handle] = feed
            handles.append(handle)
        if not handles:
            raise RuntimeError("none of the configured nodes could be resolved")
        return handles

    async def _subscription(self, client: Client, handles: list[int]) -> Notifications:
        """The subscription of an earlier session taken over, with every notification it
        holds that is not in the buffer yet; else a new one."""
        dev = self.device
        memo_key = f"opcua/{dev.device_id}/subscription"
        memo = Memo.decode(self.node.buffer.meta(memo_key))
        config = hashlib.sha256(dev.model_dump_json().encode()).hexdigest()[:16]
        token = client.uaclient.session.authentication_token.to_string()
        if memo is not None and memo.config == config:
            sub = Notifications(
                client.uaclient.session, self._parameters(), self, self.node, self._seq_key
            )
            # the last message whose values the node has (staged ones count: asked for
            # again, they came twice, when the connection was lost within a flush interval)
            last = int(self.node.meta(self._seq_key) or 0)
            republished = await take_over(client, memo, sub, last)
            if republished is not None:
                self._first -= set(handles)  # no initial values: the old queue continues
                params = sub.parameters
                sub.liveness_s = self._liveness(
                    params.RequestedPublishingInterval, params.RequestedMaxKeepAliveCount
                )
                sub.at_once = params.RequestedPublishingInterval >= self.node.config.batch_ms
                log.info("%s: subscription %d taken over; %d notification messages "
                         "republished", dev.device_id, memo.subscription_id,
                         len(republished))  # fmt: skip
                self.status.recovered += 1
                return sub
        sub = await self._subscribe(client, handles, gated=self._gap(handles) != [])
        assert sub.subscription_id is not None
        self.node.buffer.set_meta(self._seq_key, "0")
        self.node.buffer.set_meta(memo_key, Memo(sub.subscription_id, token, config).encode())
        return sub

    @property
    def _session_file(self) -> Path | None:
        """Where asyncua keeps this device's session token, to resume it after a restart."""
        path = self.node.buffer.path
        return None if path is None else Path(f"{path}.opcua-{self.device.device_id}.json")

    @property
    def _seq_key(self) -> str:
        return f"opcua/{self.device.device_id}/stored_seq"

    def _parameters(self) -> Any:
        dev = self.device
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = dev.publishing_interval_ms
        params.RequestedMaxKeepAliveCount = max(1, KEEPALIVE_MS // dev.publishing_interval_ms)
        # the lifetime must be >= 3 keep-alive counts; a long one lets a queue outlive a
        # lost connection or a gateway restart
        params.RequestedLifetimeCount = max(
            3 * params.RequestedMaxKeepAliveCount,
            int(LIFETIME_S * 1000 / dev.publishing_interval_ms),
        )
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        return params

    @staticmethod
    def _liveness(interval_ms: float, keepalive_count: int) -> float:
        """How long a subscription may stay silent: LIVENESS_KEEPALIVES keep-alive periods
        (and at least LIVENESS_MIN_S)."""
        return max(LIVENESS_MIN_S, LIVENESS_KEEPALIVES * interval_ms * keepalive_count / 1000)

    async def _subscribe(
        self, client: Client, handles: list[int], *, gated: bool = False
    ) -> Notifications:
        sub = Notifications(
            client.uaclient.session, self._parameters(), self, self.node, self._seq_key
        )
        if gated:  # before any notification can arrive
            sub.gate = asyncio.Event()
        created = await sub.init()
        sub.last_publish_at = time.monotonic()  # liveness counts from here
        sub.liveness_s = self._liveness(
            created.RevisedPublishingInterval, created.RevisedMaxKeepAliveCount
        )
        # a publish response each batch_ms or less often: stored as it arrives, in the same
        # wake-up of the loop, not at the node's next tick (one wake-up a cycle, not two)
        sub.at_once = created.RevisedPublishingInterval >= self.node.config.batch_ms
        batch = self.limits.monitored_items_per_call
        for start in range(0, len(handles), batch):
            chunk = handles[start : start + batch]
            results = await sub.create_monitored_items([self._request(h) for h in chunk])
            for handle, result in zip(chunk, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    self.status.bad(self.feeds[handle].label, result.name, log)
                    self._active[handle] = None
                else:
                    self.status.bad_points.pop(self.feeds[handle].label, None)
        return sub

    def _gap(self, handles: list[int]) -> list[tuple[int, Any, int]]:
        """(handle, node id, last value's time) of the subscribed variables whose values
        since then a new subscription would not report: those delivered before, stamped
        with the source's time."""
        if not self.device.history_backfill:
            return []
        last, active, feeds = self._last, self._active, self.feeds
        return [
            (h, self._nodeids[h], last[h])
            for h in handles
            if last[h] >= 0 and active[h] is not None and feeds[h].timestamp == "source"
        ]

    async def _backfill(self, client: Client, gate: asyncio.Event, handles: list[int]) -> None:
        """Report the values written while no subscription existed, from the server's
        history, before the new subscription's own (held at ``gate`` meanwhile)."""
        dev = self.device
        try:
            wanted = self._gap([h for h in handles if self._active[h] is not None])
            until = self.clock.now_ms() + int(dev.max_clock_skew_s * 1000)
            batch = self.limits.nodes_per_read
            items = await asyncio.wait_for(
                read_since(client, wanted, until, batch), BACKFILL_TIMEOUT_S
            )
            horizon: dict[int, int] = {}
            for handle, _, _, ts, _ in items:
                assert ts is not None  # read_since keeps values with a source time only
                horizon[handle] = max(ts, horizon.get(handle, ts))
            self.on_readings(items)
            self._horizon = horizon
            self._horizon_until = asyncio.get_running_loop().time() + HORIZON_S
            self.status.backfilled += len(items)
            log.info("%s: new subscription; %d values written since the last one read from "
                     "the server's history", dev.device_id, len(items))  # fmt: skip
        except NoHistory as exc:
            log.warning("%s: new subscription, and the server keeps no history (%s): values "
                        "written while none existed are lost", dev.device_id, exc)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the live values must flow regardless
            log.warning("%s: reading the server's history failed (%s: %s): values written "
                        "while no subscription existed are lost", dev.device_id,
                        type(exc).__name__, exc)  # fmt: skip
        finally:
            gate.set()

    def _request(self, handle: int) -> Any:
        feed = self.feeds[handle]
        tag, dev = feed.tag, self.device
        parameters = ua.MonitoringParameters()
        parameters.ClientHandle = handle
        interval = tag.sampling_interval_ms
        parameters.SamplingInterval = dev.sampling_interval_ms if interval is None else interval
        parameters.QueueSize = dev.queue_size
        parameters.DiscardOldest = True
        if tag.deadband > 0:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValue
            flt.DeadbandType = 1 if tag.deadband_type == "absolute" else 2
            flt.DeadbandValue = tag.deadband
            parameters.Filter = flt
        item = ua.ReadValueId()
        item.NodeId = self._nodeids[handle]
        item.AttributeId = AttributeIds.Value
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = item
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = parameters
        return request

    async def _poll(self, client: Client, handles: list[int]) -> None:
        """Read polled tags in batches of the server's read limit; report what changed."""
        batch = self.limits.nodes_per_read
        for start in range(0, len(handles), batch):
            chunk = [h for h in handles[start : start + batch] if self._active[h] is not None]
            if not chunk:
                continue
            params = ua.ReadParameters()
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            for handle in chunk:
                rv = ua.ReadValueId()
                rv.NodeId = self._nodeids[handle]
                rv.AttributeId = AttributeIds.Value
                params.NodesToRead.append(rv)
            results = await client.uaclient.read(params)
            items: list[Reading] = []
            for handle, dv in zip(chunk, results, strict=True):
                code = dv.StatusCode.value if dv.StatusCode is not None else 0
                if code in _REFUSED:
                    reason = ua.StatusCode(ua.UInt32(code)).name
                    self.status.bad(self.feeds[handle].label, reason, log)
                    self._active[handle] = None
                    continue
                last = self._polled.get(handle)
                current = (dv.Value.Value if dv.Value is not None else None, dv.SourceTimestamp)
                if last == current:
                    continue
                self._polled[handle] = current
                items.append(reading(handle, dv))
            self.on_readings(items)

    def on_readings(self, readings: list[Reading]) -> None:
        """Report a batch of values (the hot path)."""
        now = self.clock.now_ms()
        low, high = self._sanity.bounds(now)
        active = self._active
        first = self._first
        last = self._last
        horizon = self._horizon
        for handle, value, status, source, server in readings:
            feed = active[handle] if handle < len(active) else None
            if feed is None:
                continue
            if status & 0xC0000000:
                self.status.rejected += 1
                self._throttle(
                    log,
                    f"status:{feed.label}",
                    "%s: %s: status %s",
                    self.device.device_id,
                    feed.label,
                    ua.StatusCode(ua.UInt32(status)).name,
                )
                continue
            if first:
                first.discard(handle)
                if not first - self._polled_handles:
                    self._initial.set()
            mode = feed.timestamp
            ts = source if mode == "source" else server
            if mode == "gateway":
                ts = None
            if horizon and handle in horizon:  # live values the history read reported already
                if (now if ts is None else ts) <= horizon[handle]:
                    continue
                del horizon[handle]
            last[handle] = now if ts is None else ts
            feed.put(value, ts, now, low, high)

    def on_subscription_status(self, status: Any) -> None:
        log.warning("%s: subscription status %s", self.device.device_id, status)


def _setter(event: asyncio.Event) -> Callable[[Exception], Coroutine[Any, Any, None]]:
    async def set_event(_: Exception) -> None:
        event.set()

    return set_event


_REFUSED = frozenset(
    {
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadNodeIdInvalid,
        StatusCodes.BadAttributeIdInvalid,
        StatusCodes.BadNotReadable,
        StatusCodes.BadUserAccessDenied,
    }
)
