"""The ordinal of each value within its millisecond (``plantwire.ordinal``): no two different
values of a metric may go out at one (millisecond, ordinal), where the platform keeps one
value and refuses the other as a ``conflicting_value`` dead letter, and a value delivered
again goes out where it went the first time, absorbed by the platform as a repeat.

The rig below drives the gateway's real parts (:class:`~plantwire_edge.feed.Feed` with its
source clock, the node's numbering, its births) the way the OPC UA adapter does, and keeps
what the platform would store: one value per (metric, millisecond, ordinal)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from plantwire_bus.payload import DataType, decode_payload
from plantwire_edge.buffer import Buffer, Sample
from plantwire_edge.ddata import encode_ddata, field_for
from plantwire_edge.devices import Point
from plantwire_edge.feed import Feed
from plantwire_edge.ordinals import Ordinals
from plantwire_edge.status import AdapterStatus, Throttle

from .test_source_clock import speed_node

T0 = 1_700_000_000_000
SANE = (0, 10**13)


class SimClock:
    """The gateway's clock, set by the test, running at ``speed``."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.ms = T0

    def now_ms(self) -> int:
        return self.ms


class Client:
    """Takes what the node publishes (births here)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 0) -> asyncio.Future[None]:
        self.sent.append((topic, payload))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@dataclass
class Store:
    """What the platform keeps: one value per (key, ms, ordinal), the first one."""

    rows: dict[tuple[int, int, int], Any] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def add(self, key: int, ts: int, ordinal: int, value: Any, what: str) -> None:
        kept = self.rows.setdefault((key, ts, ordinal), value)
        if kept != value:
            self.conflicts.append(f"{what}: key {key} at {ts - T0} ms #{ordinal}: {value!r}, "
                                  f"stored {kept!r}")  # fmt: skip


class Rig:
    """One device channel of a node on a simulation's clock, its feeds, and the store."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, speed: float = 1.0) -> None:
        self.clock = SimClock(speed)
        monkeypatch.setattr("plantwire_edge.source_clock.time.monotonic", self.wall)
        self.node = speed_node(self.clock)
        self.channel = self.node.channel("M1")
        self.status = AdapterStatus("M1", "opcua")
        self.store = Store()
        self.client = Client()

    def wall(self) -> float:
        """Wall seconds, as the source clock's periods count them."""
        return 1000.0 + (self.clock.ms - T0) / self.clock.speed / 1000

    def feed(self, metric: str = "Spindle/Speed", **point: Any) -> Feed:
        return Feed(self.channel, Point(metric=metric, **point), metric, self.status, Throttle())

    def put(self, feed: Feed, value: Any, device_ts: int | None, now: int | None = None) -> None:
        """``value`` stamped ``device_ts`` by the device (None: by the gateway) arrives now."""
        if now is not None:
            self.clock.ms = now
        feed.put(value, device_ts, self.clock.ms, *SANE)

    def flush(self) -> list[Sample]:
        """What the node's next flush stores and sends, numbered; into the store."""
        samples = self.channel.take()
        for sample in samples:
            ordinal = sample[3] if len(sample) == 4 else 0
            self.store.add(sample[0], sample[2], ordinal, sample[1], "DDATA")
        return samples

    def birth(self, backlog: list[Sample] | None = None) -> dict[int, tuple[int, int, Any]]:
        """A DBIRTH now (as a rebirth would be, or a birth for ``backlog``): its values into
        the store (a null too: the ingest stores it); by key, the (ms, ordinal, value) it
        carried."""
        self.node._device_birth(self.client, self.channel, backlog)  # type: ignore[arg-type]
        payload = decode_payload(self.client.sent[-1][1])
        out = {}
        for m in payload.metrics:
            assert m.alias is not None and m.timestamp is not None
            value = None if m.is_null else m.value
            self.store.add(m.alias, m.timestamp, m.ordinal, value, "DBIRTH")
            out[m.alias] = (m.timestamp, m.ordinal, value)
        return out


def numbered(samples: list[Sample], key: int) -> list[tuple[int, int, Any]]:
    """(ms after T0, ordinal, value) of ``key``'s samples."""
    return [(s[2] - T0, s[3] if len(s) == 4 else 0, s[1]) for s in samples if s[0] == key]


def test_a_clock_set_back_gives_no_value_a_millisecond_and_ordinal_taken_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A device clock set back (by hand, a time server) stamps a value with a millisecond
    its metric used before, but not last: numbered after what that millisecond holds. The
    node numbered only repeats of a metric's last millisecond, so it went out as the first
    value there, a rival of the one stored (conflicting_value)."""
    rig = Rig(monkeypatch)
    feed = rig.feed()
    rig.put(feed, 1.0, T0 + 1_000, T0 + 1_010)
    rig.put(feed, 2.0, T0 + 2_000, T0 + 2_010)
    rig.put(feed, 3.0, T0 + 1_000, T0 + 3_010)  # the clock set back by 2 s
    rig.put(feed, 4.0, T0 + 1_000, T0 + 3_020)
    assert numbered(rig.flush(), feed.key) == [
        (1_000, 0, 1.0), (2_000, 0, 2.0), (1_000, 1, 3.0), (1_000, 2, 4.0)
    ]  # fmt: skip
    assert rig.store.conflicts == []


def test_a_value_delivered_again_goes_where_it_went_the_first_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lost OPC UA session's subscription taken over republishes what the buffer had not
    stored the sequence number of yet: values already numbered come again, in their order,
    or starting with the second of a millisecond. Each goes out at its first (millisecond,
    ordinal): the platform absorbs it as a repeat. The second of a millisecond delivered
    again alone went out as the first there (a conflicting_value)."""
    rig = Rig(monkeypatch)
    feed = rig.feed()
    for value, stamp in [(1.0, 1_000), (2.0, 1_000), (3.0, 2_000)]:
        rig.put(feed, value, T0 + stamp, T0 + 2_010)
    first = numbered(rig.flush(), feed.key)
    assert first == [(1_000, 0, 1.0), (1_000, 1, 2.0), (2_000, 0, 3.0)]
    rig.put(feed, 2.0, T0 + 1_000, T0 + 2_500)  # the message holding the second alone
    rig.put(feed, 3.0, T0 + 2_000, T0 + 2_500)
    assert numbered(rig.flush(), feed.key) == first[1:]
    for value, stamp in [(1.0, 1_000), (2.0, 1_000), (3.0, 2_000)]:  # all of them again
        rig.put(feed, value, T0 + stamp, T0 + 2_600)
    assert numbered(rig.flush(), feed.key) == first
    assert rig.store.conflicts == []


def test_values_at_one_millisecond_keep_each_change_and_absorb_a_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within one millisecond a value that comes back (1, 2, 1) is a change, kept at the next
    ordinal; the same value twice in a row is one delivered twice (OPC UA reports changes
    only): it goes out at the same ordinal, a repeat."""
    rig = Rig(monkeypatch)
    feed = rig.feed()
    for value in (1.0, 2.0, 1.0, 1.0):
        rig.put(feed, value, T0 + 1_000, T0 + 1_010)
    assert numbered(rig.flush(), feed.key) == [
        (1_000, 0, 1.0), (1_000, 1, 2.0), (1_000, 2, 1.0), (1_000, 2, 1.0)
    ]  # fmt: skip


def test_the_last_value_delivered_again_with_another_correction_goes_where_it_went(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new subscription's initial value is the variable's last value again, with its
    device time. Corrected now by another correction (here: the first time capped at the
    gateway's time, the clock corrected by less than it is ahead) it went out at another
    millisecond, a second copy of it; the same device time now maps to the same place on the
    line, and the value there is a repeat."""
    rig = Rig(monkeypatch)
    feed = rig.feed()
    ahead = 90_000
    rig.put(feed, 1.0, T0 + ahead - 2_000, T0)  # 2 s late: corrected by 88 s
    rig.put(feed, 2.0, T0 + ahead + 1_000, T0 + 500)  # 90 s ahead: capped at the arrival
    first = numbered(rig.flush(), feed.key)
    assert first == [(0, 0, 1.0), (500, 0, 2.0)]
    rig.put(feed, 2.0, T0 + ahead + 1_000, T0 + 5_000)  # the initial value of a new session
    assert numbered(rig.flush(), feed.key) == first[1:]
    # another value at that device time (a server that leaves a variable's source time
    # standing) is not pinned there: it follows the corrected line
    rig.put(feed, 4.0, T0 + ahead + 1_000, T0 + 5_000)
    assert numbered(rig.flush(), feed.key) == [(3_000, 0, 4.0)]
    assert rig.store.conflicts == []


def test_a_gateway_stamp_among_device_stamps_keeps_its_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One metric stamped by the gateway at times (a notification without a source time, a
    device time not believable) and by the device at others: the device's line, behind the
    gateway's clock by the delivery delay, comes up to the gateway's stamp after it. A device
    value on that millisecond is numbered after the gateway's value; it went out as the
    first there (conflicting_value)."""
    rig = Rig(monkeypatch)
    feed = rig.feed()
    rig.put(feed, 1.0, None, T0 + 5_000)  # stamped by the gateway
    rig.put(feed, 2.0, T0 + 4_000, T0 + 5_010)  # by the device, a second late
    rig.put(feed, 3.0, T0 + 5_000, T0 + 6_000)
    assert numbered(rig.flush(), feed.key) == [(5_000, 0, 1.0), (4_000, 0, 2.0), (5_000, 1, 3.0)]
    assert rig.store.conflicts == []


def test_a_gateway_clock_stepped_back_gives_no_value_a_taken_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway's own clock stepped back (a time server's correction) stamps a Modbus
    register's (or any gateway-stamped) value on a millisecond its metric used before."""
    rig = Rig(monkeypatch)
    feed = rig.feed("Count", datatype="Int32")
    for value, now in [(1, 1_000), (2, 2_000), (3, 1_000)]:
        rig.put(feed, value, None, T0 + now)
        rig.flush()
    assert rig.store.rows == {
        (feed.key, T0 + 1_000, 0): 1, (feed.key, T0 + 2_000, 0): 2, (feed.key, T0 + 1_000, 1): 3
    }  # fmt: skip


def test_a_merged_state_changed_late_at_an_earlier_instant_is_numbered_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two points feeding one state (OPC 40501 mode, 40502 MDI overriding it): an overriding
    value that arrives after a flush, at an instant the merge published before, changes
    what that instant says: a second value there, numbered after the first (it went out as
    the first there: conflicting_value)."""
    rig = Rig(monkeypatch)
    base = rig.feed("", map="opc40501/MachineOperationMode")
    mdi = rig.feed("", map="opc40502/CncOperationMode", override=("MDI",))
    rig.put(base, 1, T0 + 1_000, T0 + 1_010)  # AUTO
    rig.flush()
    rig.put(base, 0, T0 + 2_000, T0 + 2_010)  # MANUAL
    rig.flush()
    rig.put(mdi, 1, T0 + 1_000, T0 + 2_020)  # MDI since 1 s, delivered late
    rig.flush()
    assert sorted((ts - T0, n, v) for (_, ts, n), v in rig.store.rows.items()) == [
        (1_000, 0, "AUTO"), (1_000, 1, "MDI"), (2_000, 0, "MANUAL")
    ]  # fmt: skip
    assert rig.store.conflicts == []


async def test_a_birth_names_the_ordinal_of_a_backlog_value_it_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A metric known only from the backlog (an earlier run's, whose batch before was sent
    and stored) is born with its first value there, which may be the second of its
    millisecond: the birth says so. It said ordinal 0, the place of the value before it."""
    rig = Rig(monkeypatch)
    feed = rig.feed()
    rig.store.add(feed.key, T0 + 1_000, 0, 1.0, "the earlier run's DDATA")
    backlog: list[Sample] = [(feed.key, 2.0, T0 + 1_000, 1), (feed.key, 3.0, T0 + 2_000)]
    assert rig.birth(backlog) == {feed.key: (T0 + 1_000, 1, 2.0)}
    assert rig.store.conflicts == []  # beside the earlier run's value, not in its place


async def test_a_metric_without_a_current_value_is_born_with_a_null_numbered_like_any_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A metric born from the backlog alone (an earlier run's) has no current value at the
    next birth: the birth carries it as a null at the gateway's time, which the ingest
    stores. A value of that metric at that millisecond went out as the first there, a rival
    of the null (conflicting_value); the null is numbered now like any value, and a birth
    after repeats it at its place."""
    rig = Rig(monkeypatch)
    feed = rig.feed("Count", datatype="Int32")
    rig.clock.ms = T0 + 5_000
    born = rig.birth([(feed.key, 7, T0 + 1_000)])  # born for an earlier run's backlog
    assert born[feed.key] == (T0 + 1_000, 0, 7)
    assert rig.birth()[feed.key] == (T0 + 5_000, 0, None)  # a rebirth: no value known
    rig.put(feed, 8, None)  # the gateway reads it in the same millisecond
    assert numbered(rig.flush(), feed.key) == [(5_000, 1, 8)]
    rig.put(feed, 9, None)
    rig.flush()
    assert rig.store.conflicts == []


@dataclass
class Event:
    """A value the device stamped, as the rig delivers it (maybe more than once)."""

    value: float
    device_ts: int
    gateway: bool  # delivered without a device time
    placed: tuple[int, int, int] | None = None  # (key, ms, ordinal) it first went out at


def drive(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    steps: int = 3_000,
    set_back: float = 0.01,
    gateway: float = 0.05,
    again: float = 0.1,
    births: float = 0.05,
) -> tuple[Store, list[str]]:
    """A device clock ahead and drifting (1 s a minute, at 60x), set by hand (back or forward)
    with probability ``set_back`` a value; values at whole device seconds or any
    millisecond, delivered late in publish responses, some again (``again``: a subscription
    taken over republishes the last few), some without a device time (``gateway``); the
    gateway's clock held at whole seconds at times; flushes, and rebirths (``births``)
    between. Returns the store and the values delivered again that went out at the
    millisecond they went out at before, at a place new there (a second copy, not a repeat),
    but for those that came to the millisecond their metric was at: there a value delivered
    again out of its order cannot be told from a change back (1, 2, 1: kept)."""
    rng = random.Random(seed)
    rig = Rig(monkeypatch, speed=60.0)
    feeds = [rig.feed(), rig.feed("Spindle/Load")]
    keys = {f.key for f in feeds}
    offset, drift = rng.choice([0, 3_000, 90_000]), rng.choice([0.0, 1 / 60])
    true_ms, now = T0, T0
    pending: list[tuple[Feed, Event]] = []
    delivered: list[tuple[Feed, Event]] = []
    unflushed: list[tuple[Feed, Event]] = []
    last_ms: dict[int, int] = {}  # by key: the millisecond of its last sample
    doubled: list[str] = []
    for step in range(steps):
        true_ms += rng.choice([1, 7, 500, 1_000, 1_000, 2_000])
        if rng.random() < set_back:
            offset += rng.choice([-5_000, -1_000, 1_000, 20_000])
        device_ms = true_ms + offset + int(drift * (true_ms - T0))
        feed = rng.choice(feeds)
        if feed is feeds[0]:
            device_ms -= device_ms % 1_000  # a variable stamped at whole seconds
        value = float(rng.randrange(20)) if rng.random() < 0.3 else step + 0.5
        pending.append((feed, Event(value, device_ms, rng.random() < gateway)))
        if rng.random() < 0.7:
            continue
        # a publish response: what is pending (and maybe the last few again), up to 6 s late
        now = max(now, true_ms + rng.randrange(6_000))
        if rng.random() < 0.3:
            now -= now % 1_000  # a simulation's clock held at a whole second
        repeated = delivered[-rng.randrange(1, 6) :] if rng.random() < again else []
        batch, pending = [*repeated, *pending], []
        for feed, event in batch:
            rig.put(feed, event.value, None if event.gateway else event.device_ts, now)
        delivered += batch
        unflushed += batch
        if rng.random() < births:
            rig.birth()
        if rng.random() < 0.5:
            continue  # stored at a later flush
        samples = rig.channel.take()
        ours = iter(unflushed)  # one sample of our keys a value put, in their order
        for sample in samples:
            ordinal = sample[3] if len(sample) == 4 else 0
            place = (sample[0], sample[2], ordinal)
            if sample[0] in keys:
                feed, event = next(ours)
                assert (sample[0], sample[1]) == (feed.key, event.value)
                if event.placed is None:
                    event.placed = place
                elif (
                    event.placed[1] == sample[2]
                    and place not in rig.store.rows
                    # but on the millisecond its metric is at, a value delivered again out of
                    # its order cannot be told from a change back to one held there before
                    and last_ms.get(sample[0]) != sample[2]
                ):
                    doubled.append(f"{event}: again at {place}")  # a second copy
            last_ms[sample[0]] = sample[2]
            rig.store.add(*place, sample[1], "DDATA")
        assert next(ours, None) is None
        unflushed = []
    return rig.store, doubled


@pytest.mark.parametrize("seed", range(8))
async def test_random_clocks_and_deliveries_never_put_two_values_at_one_place(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """No two different values of a metric go out at one (millisecond, ordinal), whatever
    the clocks and deliveries do (:func:`drive`), and a value delivered again that goes out
    at the millisecond it went out at before takes the ordinal it took then."""
    store, doubled = drive(monkeypatch, seed)
    assert store.conflicts == []
    assert doubled == []


def test_a_replay_from_the_buffer_carries_the_ordinals_its_values_were_stored_with(
    tmp_path: Path,
) -> None:
    """Values are numbered before they are stored: a replay after an outage (or after a
    restart, or a message sent again for want of the host's commit) sends the numbers they
    first went out with, so it maps to the same places (the ingest absorbs it)."""
    path = str(tmp_path / "buffer.db")
    buf = Buffer(path)
    buf.open()
    key = buf.metric_key("M1", "V", DataType.Double)
    samples: list[Sample] = [(key, 1.0, T0), (key, 2.0, T0), (key, 3.0, T0 + 1), (key, 4.0, T0)]
    Ordinals().number(samples)
    assert samples == [(key, 1.0, T0), (key, 2.0, T0, 1), (key, 3.0, T0 + 1), (key, 4.0, T0, 2)]
    buf.write([("M1", samples, True)], [])
    buf.close()
    again = Buffer(path)
    (batch,) = again.open()
    replayed = again.load(batch)
    data, _ = encode_ddata(
        replayed, {key: field_for(DataType.Double)}, seq=1, timestamp=T0, historical=True
    )
    again.close()
    metrics = decode_payload(data).metrics
    assert [(m.timestamp, m.ordinal, m.value) for m in metrics] == [
        (T0, 0, 1.0), (T0, 1, 2.0), (T0 + 1, 0, 3.0), (T0, 2, 4.0)
    ]  # fmt: skip


def test_a_metrics_current_value_is_its_last_one_numbered_at_its_place() -> None:
    """The current value a birth carries is the last value numbered, with its millisecond and
    ordinal: after a value that came back to an earlier millisecond, that millisecond; after
    a value delivered again, the place it went to the first time."""
    ordinals = Ordinals()
    assert ordinals.current(7) is None
    samples: list[Sample] = [(7, 1.0, T0), (7, 2.0, T0), (7, 3.0, T0 + 1), (7, 4.0, T0)]
    ordinals.number(samples)
    assert ordinals.current(7) == (4.0, T0, 2)
    ordinals.number([(7, 3.0, T0 + 1)])  # delivered again: where it went
    assert ordinals.current(7) == (3.0, T0 + 1, 0)
    ordinals.number([(7, 2.0, T0)])
    assert ordinals.current(7) == (2.0, T0, 1)
    ordinals.number([(7, 5.0, T0)])  # a change in the millisecond it is at: the next place
    assert ordinals.current(7) == (5.0, T0, 3)
    ordinals.number([(8, None, T0)])
    assert set(ordinals.current_keys()) == {7, 8}
    assert ordinals.current(8) == (None, T0, 0)
