"""The identity of a node: which edge nodes and devices the registry knows.

Equipment is bound to (group, edge node, device): the group is its enterprise's code, the edge
node is the gateway of its site and the device is its own code. A message from an edge node
that no site of the group names, or about a device that the node's sites do not own, is
refused before anything of it is read (``unregistered_node``, ``unowned_device``): it creates
no series, no birth, no session and no rebirth request, and its dead letter is written only
within a quota, so that a noisy or hostile client costs the other nodes nothing but a set
lookup. What the quota holds back is counted on ``/metrics`` and reported in the log.

With ``unregistered_nodes = "admit"`` (development and tests) such messages are stored as
series of their own that belong to no equipment: they never change an indicator.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from plantwire_platform.ingest.host import Route

log = logging.getLogger(__name__)

UNREGISTERED_NODE = "unregistered_node"
UNOWNED_DEVICE = "unowned_device"
REPORT_EVERY_S = 60.0
MAX_REPORTED = 10_000  # distinct refused nodes counted between two reports

Node = tuple[str, str]  # group, edge node


@dataclass(frozen=True, slots=True)
class Roster:
    """The registered edge nodes of every group and the devices each one owns."""

    devices: Mapping[Node, frozenset[str]]

    def refusal(self, route: Route) -> str | None:
        """Why a message on ``route`` is refused, None if its sender is registered."""
        owned = self.devices.get((route.group_id, route.edge_node_id))
        if owned is None:
            return UNREGISTERED_NODE
        if route.device_id and route.device_id not in owned:
            return UNOWNED_DEVICE
        return None


async def load_roster(conn: psycopg.AsyncConnection[Any]) -> Roster:
    """Read the roster from the registry tables."""
    cur = await conn.execute(
        "SELECT x.code, s.edge_node_id, array_remove(array_agg(e.code), NULL)"
        " FROM site s JOIN enterprise x ON x.id = s.enterprise_id"
        " LEFT JOIN equipment e ON e.site_id = s.id GROUP BY 1, 2"
    )
    devices: dict[Node, frozenset[str]] = {}
    for group, node, codes in await cur.fetchall():
        devices[(group, node)] = devices.get((group, node), frozenset()) | frozenset(codes)
    return Roster(devices)


class Quota:
    """A token bucket: ``rate`` per second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Admission:
    """Decides, per message, whether its sender is registered; keeps the roster fresh (one
    query every ``refresh_s`` at most) and the refusals' dead letters within their quota."""

    def __init__(
        self,
        load: Callable[[], Awaitable[Roster]],
        *,
        admit_unregistered: bool,
        refresh_s: float,
        quota: Quota,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.admit_unregistered = admit_unregistered
        self.refresh_s = refresh_s
        self.quota = quota
        self.clock = clock
        self.roster = Roster({})
        self._next_load = -1e18
        self.refused: Counter[str] = Counter()  # by node, since the last report
        self.held_back = 0  # refusals beyond the quota since the last report
        self._next_report = clock() + REPORT_EVERY_S

    async def refresh(self) -> Roster:
        """Read the roster again now."""
        self.roster = await self._load()
        self._next_load = self.clock() + self.refresh_s
        return self.roster

    async def current(self) -> Roster:
        """The roster, read again if it is ``refresh_s`` old."""
        if self.clock() >= self._next_load:
            await self.refresh()
        return self.roster

    async def refusal(self, route: Route) -> str | None:
        """Why ``route``'s message is refused, None if it is taken."""
        reason = (await self.current()).refusal(route)
        if reason is None or self.admit_unregistered:
            return None
        return reason

    def refused_one(self, route: Route) -> bool:
        """Count a refusal; True if its dead letter is within the quota."""
        node = f"{route.group_id}/{route.edge_node_id}"[:120]
        if node in self.refused or len(self.refused) < MAX_REPORTED:
            self.refused[node] += 1
        written = self.quota.take()
        if not written:
            self.held_back += 1
        self.report()
        return written

    def report(self, force: bool = False) -> None:
        """Now and then, one log line about the refused senders."""
        now = self.clock()
        if not force and now < self._next_report:
            return
        self._next_report = now + REPORT_EVERY_S
        if not self.refused:
            return
        top = ", ".join(f"{node} {n}" for node, n in self.refused.most_common(5))
        log.warning(
            "refused %d messages from %d unregistered edge nodes or unowned devices (%s);"
            " %d of them beyond the dead-letter quota, counted only",
            sum(self.refused.values()),
            len(self.refused),
            top,
            self.held_back,
        )
        self.refused.clear()
        self.held_back = 0
