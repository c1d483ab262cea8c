"""What went over the wire in a golden run, kept for the day the platform refuses a value.

A :class:`WireRecorder` runs ``mosquitto_sub`` beside the run (a process of its own: the run's
process spends nothing on it), subscribed to every Sparkplug topic at QoS 1, which writes each
message as the broker delivers it (wall time, topic, payload in hex) to ``wire.txt``, between
its debug lines. In the
run's process it keeps the gateways' log records (``plantwire_edge`` and ``plantwire_bus`` from
INFO) and, for each value a gateway's feed reports, the device's time, the gateway's time, the
correction in force and the time the value was stamped with (a list append). Nothing is decoded
while the run goes on.

When the platform refused a value because a different one is stored at its series and time
(the ``conflicting_value`` dead letter), :meth:`WireRecorder.explain` writes ``conflict.txt``:
the messages that carried a value of that metric at that millisecond and ordinal, the 25
messages of the metric before and after each, the device's births and deaths and the node's,
its clock corrections (``Clock/Offset``), the log, and the feed trace around them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plantwire_bus.mqtt import parse_mqtt_url
from plantwire_bus.payload import PayloadError, decode_payload
from plantwire_edge.feed import Feed
from plantwire_edge.source_clock import OFFSET_METRIC

AROUND = 25  # messages of the metric shown before and after each colliding one
SUBSCRIBED_S = 10.0  # how long mosquitto_sub may take to have its subscription acknowledged
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONFLICT = re.compile(
    r"first: (?P<metric>.+) \(series \d+\) at (?P<at>\S+): (?P<refused>.*)"
    r" \(stored: (?P<kept>.*)\)$"
)
_LOGGERS = ("plantwire_edge", "plantwire_bus")
KEEP_FEEDS = "PLANTWIRE_WIRE_FEEDS"
"""Set (to anything), the feed trace and the log of every run are written to ``feeds.txt`` and
``log.txt`` beside the wire, conflict or not (for looking at runs that passed)."""


@dataclass(frozen=True, slots=True)
class Value:
    """One metric of one message, as it went over the wire."""

    order: int  # its line in wire.txt (lines are in the order of arrival)
    wall: float  # when mosquitto_sub received it (Unix seconds)
    kind: str  # NBIRTH, DBIRTH, DDATA, NDEATH, ...
    device: str | None
    seq: int | None
    sent_ms: int | None  # the payload's timestamp (the gateway's clock when it sent it)
    name: str
    alias: int | None
    ts: int | None
    ordinal: int
    value: Any
    historical: bool

    def line(self, mark: str = "  ", ms: int | None = None) -> str:
        rel = "" if self.ts is None or ms is None else f"{self.ts - ms:+9d}"
        return (
            f"{mark}#{self.order:<6d} {self.wall:.3f} {self.kind:<6s} seq {self.seq!s:>3s}"
            f" sent {self.sent_ms} ts {self.ts} ({rel} ms) ord {self.ordinal:<2d}"
            f" {'H' if self.historical else ' '} {self.name} = {self.value!r}"
        )


@dataclass(frozen=True, slots=True)
class FeedTrace:
    """One value a gateway's feed reported: what came in, and the time it was stamped with."""

    wall: float
    device: str
    metric: str
    native: Any
    device_ts: int | None  # None: stamped by the gateway
    now: int  # the gateway's clock at arrival
    correction_ms: int | None  # of the device's clock, after this value (None: no clock yet)
    stamped: int | None  # the staged sample's time (None: went into a state merge)

    def line(self, mark: str = "  ", ms: int | None = None) -> str:
        rel = "" if self.stamped is None or ms is None else f" ({self.stamped - ms:+d} ms)"
        return (
            f"{mark}{self.wall:.3f} {self.metric} = {self.native!r} device {self.device_ts}"
            f" now {self.now} correction {self.correction_ms} -> {self.stamped}{rel}"
        )


class _Kept(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(
            f"{record.created:.3f} {record.levelname} {record.name}: {record.getMessage()}"
        )


class WireRecorder:
    """See the module docstring; :meth:`running` starts and stops it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.wire = folder / "wire.txt"
        self.logs: list[str] = []
        self.feeds: list[FeedTrace] = []
        self._process: subprocess.Popen[bytes] | None = None
        self.note = ""  # why nothing was recorded, if so

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, mqtt_url: str, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[WireRecorder]:
        folder.mkdir(parents=True, exist_ok=True)
        recorder = cls(folder)
        recorder._subscribe(mqtt_url)
        handler = _Kept(recorder.logs)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            if logger.getEffectiveLevel() > logging.INFO:
                monkeypatch.setattr(logger, "level", logging.INFO)
        monkeypatch.setattr(Feed, "put", _traced(Feed.put, recorder.feeds))
        try:
            yield recorder
        finally:
            for name in _LOGGERS:
                logging.getLogger(name).removeHandler(handler)
            recorder.stop()
            if os.environ.get(KEEP_FEEDS):
                with (folder / "feeds.txt").open("w") as out:
                    for t in recorder.feeds:
                        out.write(f"{t.device} {t.line()}\n")
                (folder / "log.txt").write_text("\n".join(recorder.logs) + "\n")

    def _subscribe(self, mqtt_url: str) -> None:
        sub, pub = shutil.which("mosquitto_sub"), shutil.which("mosquitto_pub")
        if sub is None or pub is None:
            self.note = "no mosquitto_sub and mosquitto_pub on PATH: the wire was not recorded"
            return
        address = parse_mqtt_url(mqtt_url)
        login = ["-V", "mqttv5", "-h", address.host, "-p", str(address.port)]
        if address.username is not None:
            login += ["-u", address.username]
        if address.password is not None:
            login += ["-P", address.password]
        # subscribed once a probe on a topic of its own, subscribed in the same packet, is heard
        probe = f"plantwire-test/wire-recorder/{uuid.uuid4().hex}"
        with self.wire.open("wb") as out:
            self._process = subprocess.Popen(
                [sub, *login, "-q", "1", "-t", "spBv1.0/#", "-t", probe, "-F", "%U %t %x"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SUBSCRIBED_S
        while probe not in self.wire.read_text(errors="replace"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.note = f"mosquitto_sub did not subscribe: {self.wire.read_text()[-500:]}"
                self.stop()
                return
            subprocess.run([pub, *login, "-t", probe, "-m", "probe"], check=False, timeout=5)
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop recording the wire (what the broker delivered by now is in the file)."""
        process, self._process = self._process, None
        if process is None:
            return
        time.sleep(0.3)  # the last messages the ingest took are on their way to it too
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # -- reading ---------------------------------------------------------------------------
    def values(self, group: str, node: str) -> list[Value]:
        """Every metric of every message of edge node ``group``/``node``, aliases resolved."""
        out: list[Value] = []
        names: dict[str | None, dict[int, str]] = {}  # device (None: node) -> alias -> name
        prefix = f"spBv1.0/{group}/"
        with self.wire.open(encoding="ascii", errors="replace") as lines:
            for order, line in enumerate(lines):
                wall, topic, payload = [*line.rstrip("\n").split(" ", 2), "", ""][:3]
                if not topic.startswith(prefix) or not wall[:1].isdigit():
                    continue  # another node's, or a debug line of mosquitto_sub
                parts = topic.split("/")
                if len(parts) < 4 or parts[3] != node:
                    continue
                kind, device = parts[2], parts[4] if len(parts) > 4 else None
                try:
                    decoded = decode_payload(bytes.fromhex(payload))
                except (PayloadError, ValueError):
                    continue
                known = names.setdefault(device, {})
                if kind in ("NBIRTH", "DBIRTH"):
                    known.clear()
                for m in decoded.metrics:
                    if m.name is not None and m.alias is not None:
                        known[m.alias] = m.name
                    name = m.name or (known.get(m.alias, f"alias {m.alias}") if m.alias else "?")
                    out.append(
                        Value(order, float(wall), kind, device, decoded.seq, decoded.timestamp,
                              name, m.alias, m.timestamp, m.ordinal, m.value,
                              m.is_historical)
                    )  # fmt: skip
                if not decoded.metrics:
                    out.append(
                        Value(order, float(wall), kind, device, decoded.seq, decoded.timestamp,
                              "", None, None, 0, None, False)
                    )  # fmt: skip
        return out

    def explain(self, dead_letters: list[tuple[str, str]]) -> str | None:
        """Write ``conflict.txt`` for the run's first conflicting_value dead letter (see the
        module docstring) and say where, with the colliding messages and a few of the metric
        on either side (the test's temporary folder may be gone when someone reads this);
        None if the run had no such letter."""
        conflicts = [(r, d) for r, d in dead_letters if r == "conflicting_value"]
        if not conflicts:
            return None
        self.stop()
        path = self.folder / "conflict.txt"
        lines = [f"dead letter: {d}" for _, d in conflicts]
        topic, _, detail = conflicts[0][1].partition(": ")
        found = _CONFLICT.search(detail)
        parts = topic.split("/")
        if self.note or found is None or len(parts) < 4:
            lines.append(self.note or "could not read the dead letter's topic and detail")
            path.write_text("\n".join(lines) + "\n")
            return f"{path}: {lines[-1]}"
        group, node = parts[1], parts[3]
        device = parts[4] if len(parts) > 4 else None
        metric = found["metric"]
        micros = (datetime.fromisoformat(found["at"]) - _EPOCH) // timedelta(microseconds=1)
        ms, ordinal = divmod(micros, 1000)
        every = self.values(group, node)
        mine = [v for v in every if v.device == device and v.name == metric]
        hits = [i for i, v in enumerate(mine) if v.ts == ms and v.ordinal == ordinal]
        lines.append(
            f"{group}/{node}/{device} {metric} at {ms} ordinal {ordinal}: refused"
            f" {found['refused']}, stored {found['kept']}; {len(hits)} messages carried it"
            f" ({len(mine)} values of the metric, {len(every)} of the node on the wire)"
        )
        lines.append("\n== the values at that millisecond and ordinal ==")
        lines += [mine[i].line(">>", ms) for i in hits]
        brief = [f"written to {path}", *lines[len(conflicts) :], "-- and around them:"]
        brief += _around(mine, hits, 4, ms)
        lines.append(f"\n== the metric's values around them, in order of arrival (ts - {ms}) ==")
        lines += _around(mine, hits, AROUND, ms)
        lines.append("\n== births and deaths of the node and the device, clock corrections ==")
        for v in every:
            life = v.kind in ("NBIRTH", "NDEATH") or (
                v.device == device and v.kind in ("DBIRTH", "DDEATH")
            )
            if (life and v.name in ("", "bdSeq", metric)) or (
                v.device == device and v.name == OFFSET_METRIC
            ):
                lines.append(v.line("  ", ms))
        lines.append("\n== the gateways' log ==")
        lines += self.logs
        traced = [t for t in self.feeds if t.device == device and t.metric == metric]
        near = [i for i, t in enumerate(traced) if t.stamped == ms]
        lines.append(f"\n== the feed of {metric}: values reported around {ms} ==")
        lines += _around(traced, near, AROUND, ms)
        path.write_text("\n".join(lines) + "\n")
        with (self.folder / "device.txt").open("w") as out:  # the device's whole record
            for v in every:
                if v.device == device:
                    out.write(v.line() + "\n")
            for t in self.feeds:
                if t.device == device:
                    out.write(t.line() + "\n")
        return "\n".join(brief)


def _around(rows: list[Value] | list[FeedTrace], marked: list[int], n: int, ms: int) -> list[str]:
    """The lines of ``rows`` within ``n`` of a ``marked`` one (those marked ``>>``), with
    ``...`` where rows are left out."""
    shown: set[int] = set()
    for i in marked:
        shown.update(range(max(0, i - n), min(len(rows), i + n + 1)))
    out: list[str] = []
    last = -1
    for i in sorted(shown):
        if last >= 0 and i != last + 1:
            out.append("  ...")
        row = rows[i]
        out.append(row.line(">>" if i in marked else "  ", ms))
        last = i
    return out


def _traced(put: Any, into: list[FeedTrace]) -> Any:
    """``Feed.put`` that also notes what it did in ``into``."""

    def traced_put(
        self: Feed, native: Any, ts_ms: int | None, now: int, low: int, high: int
    ) -> None:
        staged = self.channel.staged
        before = len(staged)
        put(self, native, ts_ms, now, low, high)
        clock = self.status.clock
        stamped = staged[-1][2] if len(staged) > before and staged[-1][0] == self.key else None
        into.append(
            FeedTrace(time.time(), self.status.device_id, self.metric, native, ts_ms, now,
                      None if clock is None else clock.correction_ms, stamped)
        )  # fmt: skip

    return traced_put
