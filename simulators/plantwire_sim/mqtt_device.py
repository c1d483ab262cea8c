"""MQTT devices of simulated stations and energy boxes: vendor JSON on a plant broker.

Each device has its own connection (client id ``plantwire-sim-{code}-{random}``) and publishes
its whole document at QoS 1 to ``{prefix}/{enterprise}/{site}/{code}`` whenever a value
changes (see :mod:`plantwire_sim.station` and :mod:`plantwire_sim.meter` for the formats).
Paths like ``phases[0].v`` in the profile's tag names place values in the document.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import re
from collections.abc import Callable
from typing import Any

from plantwire_bus.mqtt import BrokerAddress, MqttClient, MqttError

from .behaviour import Step
from .endpoint import Endpoint
from .native import Profile, TagValue
from .opcua_host import ms_to_datetime
from .scenario import Machine

log = logging.getLogger(__name__)
_INDEX = re.compile(r"^(?P<key>[^\[\]]+)((?:\[\d+\])*)$")


def place(doc: dict[str, Any], path: str, value: TagValue) -> None:
    """Set ``value`` at ``path`` (dotted keys, ``[n]`` list indexes) inside ``doc``."""
    steps: list[str | int] = []
    for part in path.split("."):
        match = _INDEX.match(part)
        if match is None:
            raise ValueError(f"bad JSON path {path!r}")
        steps.append(match["key"])
        steps += [int(i) for i in re.findall(r"\[(\d+)\]", part)]
    node: Any = doc
    for step, following in itertools.pairwise(steps):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            while len(node) <= step:
                node.append(None)
            if node[step] is None:
                node[step] = empty
        elif step not in node:
            node[step] = empty
        node = node[step]
    last = steps[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value


def iso_ms(ts_ms: int) -> str:
    """``2025-03-03T08:00:01.250Z``."""
    return ms_to_datetime(ts_ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MqttMachine(Endpoint):
    """A device publishing a machine's JSON document."""

    protocol = "mqtt"

    def __init__(
        self, machine: Machine, profile: Profile, address: BrokerAddress, topic: str
    ) -> None:
        super().__init__(machine, profile)
        self.address = address
        self.topic = topic
        self.client: MqttClient | None = None
        self.seq = 0
        self.published = 0
        self._silent = False
        self._frozen: dict[str, TagValue] | None = None
        self._garble = random.Random(f"plantwire-sim/{machine.code}/malformed")
        self._order = [t.name for t in profile.tags]
        self.retain = bool(getattr(profile, "retain", False))
        self.periodic = bool(getattr(profile, "periodic", False))
        self.last_ts = 0
        self.ts_format = str(getattr(profile, "timestamp_format", "epoch_ms"))
        self.on_publish: Callable[[int, asyncio.Future[None]], None] | None = None
        """Told of each message published: (its simulated time, done on the broker's PUBACK)
        (see :mod:`plantwire_sim.deliveries`)."""

    async def start(self) -> None:
        client = MqttClient(self.address, f"plantwire-sim-{self.code}-{os.urandom(4).hex()}")
        try:
            await client.connect()
        except MqttError as exc:
            raise OSError(f"MQTT device {self.code}: {exc}") from exc
        self.client = client
        if self.current:
            self._publish(self.document(self.distorted(self.current), self.last_ts), self.last_ts)

    async def stop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.disconnect()

    async def apply(self, step: Step) -> None:
        self.last_ts = step.ts_ms
        if not step.writes and step.segment is None and step.made is None:
            # a heartbeat: the whole document again (a frozen device repeats its frozen one)
            frozen = self._frozen if "freeze" in self.faults else None
            shown = frozen if frozen is not None else self.distorted(self.current)
            if "freeze" not in self.faults or frozen is not None:
                self._publish(self.document(shown, step.ts_ms), step.ts_ms)
            return
        if "freeze" in self.faults and self._frozen is not None and self.periodic:
            self.current.update(step.values())
            if step.writes:
                self._publish(self.document(self._frozen, step.ts_ms), step.ts_ms)
            return
        await super().apply(step)

    async def show(self, ts_ms: int, values: dict[str, TagValue]) -> None:
        full = self.distorted(self.current)
        full.update(values)
        self._publish(self.document(full, ts_ms), ts_ms)

    def document(self, values: dict[str, TagValue], ts_ms: int) -> dict[str, Any]:
        ts = self.faults.timestamp(ts_ms)
        self.seq += 1
        envelope = getattr(self.profile, "envelope", None)
        stamp: str | int = iso_ms(ts) if self.ts_format == "iso8601" else ts
        doc: dict[str, Any] = envelope(self.code, stamp, self.seq) if envelope else {"ts": stamp}
        for tag in self._order:
            if tag in values:
                place(doc, tag, values[tag])
        return doc

    def _payload(self, doc: dict[str, Any]) -> bytes:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        if "malformed" not in self.faults:
            return raw
        variant = self._garble.randrange(5)
        if variant == 0:
            return raw[: len(raw) // 2]
        if variant == 1:
            return b"\x00\xff\xfeERR 42"
        if variant == 2:
            return json.dumps(_stringly(doc)).encode()
        if variant == 3:
            return json.dumps({k: v for k, v in doc.items() if not isinstance(v, dict)}).encode()
        return b""

    def _publish(self, doc: dict[str, Any], ts_ms: int) -> None:
        client = self.client
        if client is None or self._silent:
            return
        fut = client.publish_nowait(self.topic, self._payload(doc), qos=1, retain=self.retain)
        fut.add_done_callback(_consume)
        self.published += 1
        if self.on_publish is not None:
            self.on_publish(ts_ms, fut)

    async def fault_on(self, kind: str, ts_ms: int) -> None:
        if kind == "restart":
            self._silent = True
            await self.stop()
        elif kind == "drop":
            self._silent = True
            if self.client is not None:
                self.client.drop_connection()
        elif kind == "silent":  # still connected, saying nothing
            self._silent = True
        elif kind == "freeze":
            self._frozen = self.distorted(self.current)
        else:
            await super().fault_on(kind, ts_ms)

    async def fault_off(self, kind: str, ts_ms: int) -> None:
        if kind in ("restart", "drop", "silent"):
            self._silent = False
            if self.client is not None:  # back after the drop: announce the current state
                self._publish(self.document(self.distorted(self.current), ts_ms), ts_ms)
                return
            try:
                await self.start()
            except OSError as exc:
                log.warning("%s", exc)
            return
        if kind == "freeze":
            self._frozen = None
        await super().fault_off(kind, ts_ms)

    def describe(self) -> dict[str, Any]:
        return {"broker": str(self.address), "topic": self.topic}


def _stringly(doc: Any) -> Any:
    """The document with every number turned into a string with a decimal comma."""
    if isinstance(doc, dict):
        return {k: _stringly(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_stringly(v) for v in doc]
    if isinstance(doc, bool) or not isinstance(doc, int | float):
        return doc
    return str(doc).replace(".", ",")


def _consume(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # a publish lost to a disconnect is no error of the simulator
