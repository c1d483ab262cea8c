"""The edge node's broker connection.

Every connection is a fresh MQTT session (nothing queued by an earlier session is resent
behind the node's back: the buffer decides what to send) whose Will is the NDEATH carrying
that connection's ``bdSeq``; ``bdSeq`` is kept in the buffer so it continues across restarts.
Connection attempts back off with jitter, in the gateway clock's time
(:func:`~plantwire_edge.clock.wall_s`): on a simulation's clock at 600x a broker that comes
back is connected to again within ``MAX_BACKOFF_S`` *simulated* seconds, not wall seconds
(100 simulated minutes); at 1x nothing changes. The connection attempt itself (and its
timeout) is a network round trip in wall time. NCMD, the primary host's STATE and its commit
confirmations (a plantwire extension) are handed to the node as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

from plantwire_bus.extension import committed_topic
from plantwire_bus.mqtt import Message, MqttClient, MqttError, Will, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.runner import stopped_within
from plantwire_bus.topics import MessageType, Topic, state_topic
from plantwire_edge.buffer import Buffer
from plantwire_edge.clock import WALL_CLOCK, Clock, wall_s
from plantwire_edge.config import EdgeConfig
from plantwire_edge.status import Throttle

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 10.0
"""The back-off between connection attempts: doubling from ``FIRST_BACKOFF_S`` up to this,
jittered, in seconds of the gateway's clock."""


class Session(Protocol):
    """What the node does when a session starts or ends, and with the messages it gets."""

    @property
    def birthed(self) -> bool: ...

    def attached(self, client: MqttClient) -> None: ...

    def detached(self) -> None: ...

    def command(self, message: Message) -> None: ...


class ConnectStats(Protocol):
    connects: int
    connect_failures: int


class Uplink:
    def __init__(
        self,
        config: EdgeConfig,
        buffer: Buffer,
        stats: ConnectStats,
        node: Session,
        clock: Clock = WALL_CLOCK,
    ) -> None:
        self.config = config
        self.clock = clock
        self.buffer = buffer
        self.stats = stats
        self.node = node
        self.bd_seq = 0
        self.host_gone = asyncio.Event()  # a valid offline STATE: NDEATH, disconnect, again

    def death_payload(self) -> bytes:
        bd = Metric(name="bdSeq", datatype=DataType.Int64, value=self.bd_seq)
        return encode_payload(Payload(timestamp=self.clock.now_ms(), metrics=(bd,)))

    def _topic(self, kind: MessageType) -> str:
        return str(Topic(self.config.group_id, kind, self.config.edge_node_id))

    async def run(self, halt: asyncio.Event) -> None:
        """Connect, serve a session, reconnect; until ``halt`` (then NDEATH, disconnect)."""
        cfg = self.config
        address = parse_mqtt_url(cfg.mqtt_url)
        self.bd_seq = int(self.buffer.meta("bd_seq", "255") or 255)
        delay = FIRST_BACKOFF_S
        said = Throttle(MAX_BACKOFF_S)  # the first failure of an outage, then every 10 wall s
        advance = True  # bdSeq goes up once per MQTT CONNECT packet sent, not per attempt
        while not halt.is_set():
            if advance:
                self.bd_seq = (self.bd_seq + 1) % 256
                self.buffer.set_meta("bd_seq", str(self.bd_seq))
            will = Will(self._topic(MessageType.NDEATH), self.death_payload(), qos=1)
            # no automatic reconnect: it would send the same Will (bdSeq) in a new CONNECT
            client = MqttClient(
                address, f"{cfg.group_id}-{cfg.edge_node_id}", will=will, reconnect=False
            )
            lost = asyncio.Event()
            client.on_disconnect.append(lost.set)
            try:
                await client.connect()
            except MqttError as exc:
                advance = client.connect_sent  # refused or unanswered: its CONNECT counted
                self.stats.connect_failures += 1
                said(log, "connect", "%s; retrying", exc)
                # clock time (at 600x a wall second is ten simulated minutes)
                await stopped_within(halt, wall_s(self.clock, delay * random.uniform(0.5, 1.0)))
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            delay, advance, said = FIRST_BACKOFF_S, True, Throttle(MAX_BACKOFF_S)
            self.stats.connects += 1
            await self._session(client, lost, halt)

    async def _session(self, client: MqttClient, lost: asyncio.Event, halt: asyncio.Event) -> None:
        cfg = self.config
        commands: asyncio.Task[None] | None = None
        attached = False
        try:
            await client.subscribe(self._topic(MessageType.NCMD))
            if cfg.primary_host_id is not None:
                await client.subscribe(committed_topic(cfg.group_id, cfg.edge_node_id))
                await client.subscribe(state_topic(cfg.primary_host_id))
            log.info("connected to %s (bdSeq %d)", client.address, self.bd_seq)
            self.node.attached(client)
            attached = True
            # only now: the host's retained STATE, which may have arrived right after the
            # SUBACK, must not be taken before attached() marks the host offline
            commands = asyncio.get_running_loop().create_task(self._commands(client))
            waiters = [asyncio.ensure_future(e.wait()) for e in (lost, halt, self.host_gone)]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        except (MqttError, TimeoutError) as exc:
            log.warning("MQTT session failed: %s", exc)
        finally:
            if commands is not None:
                commands.cancel()
            birthed = attached and self.node.birthed
            if attached:
                self.node.detached()
            ending = halt.is_set() or self.host_gone.is_set()
            if ending and client.connected.is_set() and birthed:
                try:
                    ndeath = client.publish(self._topic(MessageType.NDEATH), self.death_payload())
                    await asyncio.wait_for(ndeath, 5)
                except (MqttError, TimeoutError):
                    log.warning("could not publish NDEATH; the Will covers it")
            if self.host_gone.is_set() and not halt.is_set():
                log.info("primary host went offline: NDEATH sent, connecting again")
            self.host_gone.clear()
            # strict: MQTT 5.0's 'Disconnect with Will Message', as Sparkplug asks (the broker
            # then publishes the Will too: a second NDEATH with the same bdSeq)
            await client.disconnect(with_will=cfg.spec_strict and birthed)

    async def _commands(self, client: MqttClient) -> None:
        async for message in client.messages():
            self.node.command(message)
