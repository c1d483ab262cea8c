"""The gateway's OPC UA subscription: notifications handed over per publish response and
acknowledged only once durable, and its recovery after a lost connection or a restart.

Each notification message's values go to the adapter at once; the callback then waits until
they are in the durable buffer, and only then returns, so asyncua acknowledges the message with
the next publish request. The message's sequence number is stored in the same buffer
transaction as its values, beside the subscription's id. A new session (after a lost
connection, or a gateway killed and restarted) first takes the old subscription over
(TransferSubscriptions) and asks again (Republish) for every message after the last one stored,
before new values flow; only if the server no longer has it is a new subscription created.
The session itself is resumed when it is still alive (asyncua's persisted session state, kept
beside the buffer): its subscription then simply continues.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import Subscription

from plantwire_edge.opcua_publish import Reading, Readings, readings_of

log = logging.getLogger(__name__)

LIVENESS_MIN_S = 10.0  # a subscription is never judged dead sooner: a busy server is slow
MAX_REPUBLISH = 10_000  # notification messages asked for again after a lost session


class Store(Protocol):
    """The node, as the subscription sees it."""

    async def stored(
        self, meta: tuple[str, str] | None = None, *, at_once: bool = False
    ) -> None: ...


class Receiver(Protocol):
    """The adapter, as the subscription sees it."""

    def on_readings(self, readings: list[Reading]) -> None: ...

    def on_subscription_status(self, status: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Memo:
    """What the buffer remembers of a device's subscription."""

    subscription_id: int
    session: str  # the authentication token of the session that owns it
    config: str  # fingerprint of the device config it was created for (client handles)

    def encode(self) -> str:
        doc = {"id": self.subscription_id, "session": self.session, "config": self.config}
        return json.dumps(doc)

    @classmethod
    def decode(cls, text: str | None) -> Memo | None:
        try:
            doc = json.loads(text or "")
            return cls(int(doc["id"]), str(doc["session"]), str(doc["config"]))
        except (ValueError, TypeError, KeyError):
            return None


class Notifications(Subscription):
    """A subscription that hands each publish response's items over at once and returns
    (lets asyncua acknowledge) only when they are durably stored."""

    def __init__(
        self, session: Any, params: Any, receiver: Receiver, store: Store, seq_key: str
    ) -> None:
        super().__init__(session, params, None)
        self._receiver = receiver
        self._store = store
        self._seq_key = seq_key
        self.liveness_s = LIVENESS_MIN_S
        self.at_once = False  # each publish response stored at once (see EdgeNode.stored)
        # closed while older values are read from the server's history: newer ones wait
        # (unacknowledged) so that each variable's values reach the node in order
        self.gate: asyncio.Event | None = None

    async def publish_callback(self, publish_result: Any) -> None:
        self.last_publish_at = time.monotonic()
        if self.gate is not None and not self.gate.is_set():
            await self.gate.wait()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        values = False
        for notification in message.NotificationData:
            if isinstance(notification, Readings):  # decoded by our PublishSession
                self._receiver.on_readings(notification.items)
                values = True
            elif isinstance(notification, ua.DataChangeNotification):  # republished
                self._receiver.on_readings(readings_of(notification.MonitoredItems))
                values = True
            elif isinstance(notification, ua.StatusChangeNotification):
                self._receiver.on_subscription_status(notification.Status)
        if values:
            self.last_sequence_number = int(message.SequenceNumber)
            # asyncua acknowledges this message with the next publish request, sent when this
            # returns: only once its values (and its sequence number) are in the buffer
            meta = (self._seq_key, str(self.last_sequence_number))
            await self._store.stored(meta, at_once=self.at_once)
        self.last_publish_at = time.monotonic()


async def take_over(
    client: Client, memo: Memo, sub: Notifications, last_stored: int
) -> list[int] | None:
    """Continue the subscription of ``memo`` in this session and republish every notification
    message after ``last_stored``; the sequence numbers republished, None if the server no
    longer has the subscription for us.

    If this session is the memo's own session, resumed (ActivateSession on a new channel,
    asyncua's ``session_state_path``), the subscription is still ours; otherwise it is
    transferred (TransferSubscriptions)."""
    session = client.uaclient.session
    if session.authentication_token.to_string() != memo.session:
        params = ua.TransferSubscriptionsParameters()
        params.SubscriptionIds = [memo.subscription_id]
        params.SendInitialValues = False
        try:
            results = await client.uaclient.transfer_subscriptions(params)
        except Exception as exc:  # noqa: BLE001 - an old server or a refusal: start afresh
            log.info("subscription %d not transferred: %s", memo.subscription_id, exc)
            return None
        if not results or not results[0].StatusCode.is_good():
            return None
    # the subscription must exist for this session (a restarted server may even hand out
    # the same session token and subscription id again, for nothing)
    check = ua.SetPublishingModeParameters()
    check.PublishingEnabled = True
    check.SubscriptionIds = [memo.subscription_id]
    try:
        codes = await session.set_publishing_mode(check)
    except ua.uaerrors.UaStatusCodeError:
        return None
    if not codes or not codes[0].is_good():
        return None
    sub.subscription_id = memo.subscription_id
    sub.last_publish_at = time.monotonic()  # liveness counts from here
    session._subscription_callbacks[memo.subscription_id] = sub.publish_callback
    republished: list[int] = []
    seq = last_stored + 1
    while len(republished) < MAX_REPUBLISH:
        try:
            message = await session.republish(memo.subscription_id, seq)
        except ua.uaerrors.UaStatusCodeError:
            break  # BadMessageNotAvailable: nothing more was sent and not stored
        if not message.NotificationData:
            break
        result = ua.PublishResult(memo.subscription_id, NotificationMessage=message)
        await sub.publish_callback(result)
        republished.append(seq)
        seq += 1
    session.ensure_publish_loop()
    return republished
