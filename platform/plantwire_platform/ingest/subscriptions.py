"""What the ingest subscribes to: its own STATE topic and the topics of the edge nodes the
registry knows.

With node identity on (``unregistered_nodes = "refuse"``) a worker subscribes, per registered
edge node, to ``spBv1.0/{group}/+/{edge_node}`` and ``spBv1.0/{group}/+/{edge_node}/+`` (its
node and device messages) and follows the registry: a gateway registered is subscribed, one
that leaves the registry (or changes its edge node id) unsubscribed, at the next roster read
(``registry_refresh_s``), without a restart. The broker drops the messages of nodes nobody
subscribed to, so an unregistered sender costs the worker nothing, however much it sends
(docs/security.md). A registered node's message about a device it does not own still arrives
and is refused (``unowned_device``). With ``"admit"`` (development) the worker subscribes to
the whole namespace, ``spBv1.0/#``. Workers of a shared group subscribe to the same filters
under ``$share/{group}/``; each subscribes to its host's STATE topic on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from plantwire_bus.mqtt import MqttClient
from plantwire_bus.topics import TopicError, edge_node_subscriptions, subscription
from plantwire_platform.ingest.admission import Node, Roster

log = logging.getLogger(__name__)


class Subscriptions:
    """The topic filters one worker holds, kept equal to the registry's edge nodes."""

    def __init__(
        self,
        client: MqttClient,
        state_topic: str,
        *,
        qos: int,
        shared_group: str | None,
        everything: bool,
    ) -> None:
        self.client = client
        self.state_topic = state_topic
        self.qos = qos
        self.prefix = "" if shared_group is None else f"$share/{shared_group}/"
        self.everything = everything
        self.nodes: frozenset[Node] = frozenset()
        self.left = False  # the shared filters given up (leave): follow no more

    def filters(self, nodes: Iterable[Node]) -> list[str]:
        """The filters of ``nodes``; an id that cannot be a topic element is left out (the
        registry's codes always can)."""
        out = []
        for group, node in sorted(nodes):
            try:
                out += [self.prefix + f for f in edge_node_subscriptions(group, node)]
            except TopicError as exc:
                log.warning("edge node %s/%s not subscribed: %s", group[:80], node[:80], exc)
        return out

    async def start(self, roster: Roster, persistent: bool, seen: Iterable[Node] = ()) -> None:
        """Right after connecting, before STATE online: the STATE topic and the registered
        nodes' topics (or everything). A ``persistent`` session may still hold what an
        earlier life subscribed to: the catch-all of a life that admitted everyone and the
        filters of nodes ``seen`` before (they sent a birth) that the registry no longer
        names; both are dropped when refusing."""
        catch_all = self.prefix + subscription()
        if self.everything:
            if self.prefix:  # a shared catch-all brings the STATE topic to one worker only
                await self.client.subscribe(self.state_topic, 1)
            await self.client.subscribe(catch_all, self.qos)
            return
        await self.client.subscribe(self.state_topic, 1)
        self.nodes = frozenset(roster.devices)
        if persistent:
            gone = self.filters(frozenset(seen) - self.nodes)
            await self.client.unsubscribe([catch_all, *gone])
        await self.client.subscribe_all(self.filters(self.nodes), self.qos)
        log.info("subscribed to the topics of %d registered edge nodes", len(self.nodes))

    async def follow(self, roster: Roster) -> None:
        """Subscribe to nodes new in ``roster``, unsubscribe from those it no longer has.
        Without a connection the client sends both at its next connect."""
        if self.everything or self.left:
            return
        nodes = frozenset(roster.devices)
        added, removed = nodes - self.nodes, self.nodes - nodes
        if not added and not removed:
            return
        self.nodes = nodes
        log.info("registry changed: subscribing to %d edge nodes, unsubscribing from %d",
                 len(added), len(removed))  # fmt: skip
        try:
            if removed:
                await self.client.unsubscribe(self.filters(removed))
        finally:  # the client keeps both requests for its next connect if this one is lost
            if added and not self.left:  # (left meanwhile: the worker is going)
                await self.client.subscribe_all(self.filters(added), self.qos)

    async def leave(self) -> None:
        """Unsubscribe from the shared filters (a worker leaving its group): once the broker
        has answered, it hands this worker no new message of them. The STATE topic stays."""
        self.left = True
        filters = [self.prefix + subscription()] if self.everything else self.filters(self.nodes)
        await self.client.unsubscribe(filters)
