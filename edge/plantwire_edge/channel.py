"""A device as the node sees it: an adapter's handle for reporting values and presence, and
the node's queue of that device's batches."""

from __future__ import annotations

import collections
from typing import Any, Protocol

from plantwire_bus.payload import DataType
from plantwire_edge.buffer import Batch, Sample
from plantwire_edge.clock import Clock, speed_of
from plantwire_edge.ordinals import Ordinals
from plantwire_edge.state_merge import Member, StateMerge


class Registrar(Protocol):
    """The node, as its device channels see it."""

    clock: Clock

    def register(self, device_id: str, name: str, datatype: DataType) -> int: ...


class DeviceChannel:
    """An adapter's handle on one device: register metrics, report values and presence."""

    def __init__(self, node: Registrar, device_id: str) -> None:
        self.device_id = device_id
        self._node = node
        self.staged: list[Sample] = []
        self.ordinals = Ordinals()  # numbers the values in ``staged``; each metric's current
        self.numbered = 0  # the first values of ``staged`` numbered already (for a birth)
        self.keys: set[int] = set()  # registered by the adapter
        self.birth_keys: set[int] = set()  # in the last DBIRTH
        self.online = False
        self.connecting = False  # reached, its current values being read: not online yet
        self.born = False
        self.rebirth = False
        self.death_due = False
        self.offline_at: int | None = None  # when the adapter lost the device
        self.kept_since: int | None = None  # read all along since the uplink was lost then
        self.online_at = 0  # when the adapter last found the device (born as of then)
        self.died_at = 0  # the timestamp of its last DDEATH (its next birth is later)
        self.birth_at = 0  # the timestamp of its last DBIRTH (a rebirth is no earlier)
        self.last_ts = 0  # newest timestamp sent from the backlog
        self.checked = 0  # keys with a current value when last compared with the birth
        self.unsent: collections.deque[Batch] = collections.deque()
        self.inflight: dict[int, Batch] = {}
        self.state_feeds: dict[int, list[tuple[Member, tuple[str, ...]]]] = {}  # mapped points
        self.merges: dict[int, StateMerge] = {}  # by metric key, where several feed one state

    def metric(self, name: str, datatype: DataType) -> int:
        """The key (alias) under which values of metric ``name`` are reported."""
        key = self._node.register(self.device_id, name, datatype)
        self.keys.add(key)
        return key

    @property
    def speed(self) -> float:
        """How fast the node's clock runs (1 but for a gateway on a simulation's clock)."""
        return speed_of(self._node.clock)

    def put(self, key: int, value: Any, ts_ms: int) -> None:
        self.staged.append((key, value, ts_ms))

    def number_staged(self) -> None:
        """Number the values staged so far (a birth carries current values with their
        ordinal: they are numbered as they will be sent); the last of each key is current."""
        if self.merges:
            self.merge_staged()
        self.ordinals.number(self.staged, self.numbered)
        self.numbered = len(self.staged)

    def take(self) -> list[Sample]:
        """The values staged so far, numbered, for the buffer (the stage is empty after)."""
        self.number_staged()
        samples, self.staged, self.numbered = self.staged, [], 0
        return samples

    def merge_staged(self) -> None:
        """Stage what the state merges collected (see :mod:`plantwire_edge.state_merge`)."""
        for merge in self.merges.values():
            if merge.events:
                self.staged.extend(merge.drain())

    def set_connecting(self) -> None:
        """The adapter reached the device and reads its current values before reporting it
        online: values reported meanwhile wait for its birth, instead of going out as the
        backlog of a device that is gone (born and dead again at once)."""
        self.connecting = True

    def set_online(self, samples: list[Sample], at_ms: int | None = None) -> None:
        """The device is reachable (since ``at_ms``, default now: a device that says when it
        spoke is born as of then); ``samples`` are its current values (sent in its birth)."""
        self.connecting = False
        self.staged.extend(samples)
        if self.online:
            self.rebirth = self.born
        else:
            now = self._node.clock.now_ms()
            self.online_at = now if at_ms is None else min(at_ms, now)
        self.online = True
        self.offline_at = None

    def set_offline(self, at_ms: int | None = None) -> None:
        """The device was lost (at ``at_ms``, default now): a DDEATH follows the values
        already reported."""
        self.connecting = False
        if self.online:
            self.online = False
            self.death_due = self.born
            self.kept_since = None
            self.offline_at = self._node.clock.now_ms() if at_ms is None else at_ms
