"""10,000 malformed or hostile messages, generated with hypothesis, through a real Mosquitto
into a running worker: it keeps running and stores each one as exactly one dead letter."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from plantwire_bus.mqtt import MqttClient, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.sparkplug_b_pb2 import Payload as PbPayload
from plantwire_platform.ingest.worker import IngestWorker
from plantwire_platform.settings import PlatformSettings

NOW = time.time_ns() // 1_000_000
pytestmark = [
    pytest.mark.backends("postgres"),  # every message is refused: no sample is stored
    pytest.mark.long,  # 10,000 messages, a minute and more: after the main suite (.ci/run)
]

EXAMPLES, PER_EXAMPLE = 50, 200  # 10,000 messages
ALIASES = {1: DataType.Double, 2: DataType.UInt16, 3: DataType.Boolean, 4: DataType.String}
NAMES = {f"m{a}" for a in ALIASES}


@dataclass
class Plant:
    worker: IngestWorker
    task: asyncio.Task[None]
    edge: MqttClient
    database_url: str
    group: str
    sent: int = 0


@pytest.fixture
async def plant(database_url: str, mqtt_url: str, unique: str) -> AsyncIterator[Plant]:
    settings = PlatformSettings(
        database_url=database_url,
        mqtt_url=mqtt_url,
        host_id=f"fuzz-{unique}",
        batch_age_ms=50,
        unregistered_nodes="admit",  # no registry: the host mechanics under test
    )
    worker, stop = IngestWorker(settings), asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 10)
    group = f"V{unique}"
    async with MqttClient(parse_mqtt_url(mqtt_url), f"edge-{unique}", max_inflight=1000) as edge:
        await edge.publish(
            f"spBv1.0/{group}/NBIRTH/N", encode_payload(Payload(timestamp=NOW, seq=0))
        )
        birth = tuple(
            Metric(name=f"m{a}", alias=a, datatype=dt, is_null=True) for a, dt in ALIASES.items()
        )
        await edge.publish(
            f"spBv1.0/{group}/DBIRTH/N/D",
            encode_payload(Payload(timestamp=NOW, seq=1, metrics=birth)),
        )
        yield Plant(worker, task, edge, database_url, group)
    stop.set()
    await asyncio.wait_for(task, 20)


def parses(data: bytes) -> bool:
    try:
        PbPayload().ParseFromString(data)
    except DecodeError:
        return False
    return True


# -- hostile messages: (topic under spBv1.0/, payload); the victim is the born device --------
def victim(payload: bytes) -> tuple[str, bytes]:
    return ("VICTIM", payload)


def data(metrics: list[Metric], with_header: bool = True) -> bytes:
    payload = (
        Payload(timestamp=NOW, seq=5, metrics=tuple(metrics))
        if with_header
        else Payload(metrics=tuple(metrics))
    )
    return encode_payload(payload, omit_datatypes=True)


def good_metrics(rng: random.Random, n: int) -> list[Metric]:
    return [
        Metric(
            alias=1,
            datatype=DataType.Double,
            value=rng.uniform(-1e9, 1e9),
            timestamp=NOW - rng.randrange(3_600_000),
        )
        for _ in range(n)
    ]


seeds = st.integers(0, 2**32 - 1)


@st.composite
def truncated(draw: st.DrawFn) -> tuple[str, bytes]:
    metrics = good_metrics(random.Random(draw(seeds)), draw(st.integers(1, 6)))
    whole = data(metrics, with_header=False)  # metrics last: a cut lands inside one
    last = len(encode_payload(Payload(metrics=tuple(metrics[-1:])), omit_datatypes=True))
    cut = draw(st.integers(1, last - 1))
    assert not parses(whole[:-cut])  # broken by construction, checked by the reference parser
    return victim(whole[:-cut])


garbage = st.tuples(
    st.builds(lambda g, n: f"G{g}/DDATA/N{n}/D", st.integers(0, 10**9), st.integers(0, 99)),
    st.binary(max_size=200),
)

_WRONG = (  # a value in a field the birth's datatype does not allow, or out of its range
    st.builds(lambda v: Metric(alias=1, datatype=DataType.String, value=v), st.text(max_size=8)),
    st.builds(lambda v: Metric(alias=1, datatype=DataType.Boolean, value=v), st.booleans()),
    st.builds(
        lambda v: Metric(alias=1, datatype=DataType.Int64, value=v),
        st.integers(-(2**63), 2**63 - 1),
    ),
    st.builds(lambda v: Metric(alias=2, datatype=DataType.Double, value=v), st.floats()),
    st.builds(
        lambda v: Metric(alias=2, datatype=DataType.UInt32, value=v), st.integers(65_536, 2**32 - 1)
    ),
    st.builds(
        lambda v: Metric(alias=3, datatype=DataType.Int32, value=v),
        st.integers(-(2**31), 2**31 - 1),
    ),
    st.builds(lambda v: Metric(alias=3, datatype=DataType.String, value=v), st.text(max_size=8)),
    st.builds(lambda v: Metric(alias=4, datatype=DataType.Double, value=v), st.floats()),
    st.builds(
        lambda v: Metric(alias=4, datatype=DataType.String, value="a\0" + v), st.text(max_size=8)
    ),
)
wrong_types = st.lists(st.one_of(*_WRONG), min_size=1, max_size=4).map(lambda ms: victim(data(ms)))

huge_arrays = st.builds(  # big array-like values where numbers are due, or thousands of metrics
    lambda n, many: victim(
        data([Metric(alias=10 + i, datatype=DataType.Double, value=1.0) for i in range(n)])
        if many
        else data([Metric(alias=1, datatype=DataType.Bytes, value=bytes(n * 10))] * 3)
    ),
    st.integers(500, 3_000),
    st.booleans(),
)


@st.composite
def unknown_aliases(draw: st.DrawFn) -> tuple[str, bytes]:
    rng = random.Random(draw(seeds))
    name = draw(st.none() | st.text(min_size=1, max_size=12).filter(lambda t: t not in NAMES))
    metrics = [
        Metric(alias=rng.randrange(5, 2**40), datatype=DataType.Double, value=1.0)
        for _ in range(draw(st.integers(0, 6)))
    ]
    metrics.append(
        Metric(alias=rng.randrange(5, 2**40), name=name, datatype=DataType.Double, value=2.0)
    )
    return victim(data(metrics))


@st.composite
def absurd_times(draw: st.DrawFn) -> tuple[str, bytes]:
    rng = random.Random(draw(seeds))
    early = draw(st.booleans())
    values: dict[int, float | bool | str] = {1: 1.5, 2: 1, 3: True, 4: "x"}
    metrics = []
    for _ in range(draw(st.integers(1, 6))):
        alias = rng.choice(list(ALIASES))
        ts = (
            rng.randrange(1, 946_684_800_000)
            if early
            else NOW + rng.randrange(3 * 86_400_000, 2**62)
        )
        metrics.append(
            Metric(alias=alias, datatype=ALIASES[alias], value=values[alias], timestamp=ts)
        )
    return victim(data(metrics))


element = st.text(
    alphabet=st.characters(  # what a broker accepts in a topic: no wildcards, controls
        blacklist_characters="+#/", blacklist_categories=["Cs", "Cc", "Cn", "Co"]
    ),
    min_size=0,
    max_size=20,
)
injected_topic = st.one_of(
    st.builds(lambda g, n, d: f"{g}/DDATA/{n}/{d}", element, element, element),  # no such device
    st.builds(lambda g, n: f"{g}/NDATA/{n}", element, element),
    st.builds(
        lambda g, t, n: f"{g}/{t}/{n}",
        element,
        st.sampled_from(["DDATA", "XBIRTH", "nbirth", ""]),
        element,
    ),
    st.builds(lambda g, n, d, e: f"{g}/DDATA/{n}/{d}/{e}", element, element, element, element),
    st.builds(lambda g: f"{g}/DDATA", element),
    st.builds(
        lambda g, n, d: f"{g}'; DROP TABLE series; --/DDATA/{n}/{d}", element, element, element
    ),
)
topic_injection = st.tuples(
    injected_topic.map(lambda t: "X" + t),
    st.just(data([Metric(alias=1, datatype=DataType.Double, value=1.0)])),
)

bad_births = st.builds(  # a metric without datatype; the birth stamped now or by a reset clock
    lambda g, name, stamp: (
        f"B{g}/NBIRTH/N",
        encode_payload(
            Payload(
                timestamp=stamp,
                seq=0,
                metrics=(
                    Metric(name=name, alias=1, datatype=DataType.Double, value=1.0, timestamp=NOW),
                    Metric(name="no datatype", alias=2, is_null=True),
                ),
            )
        ),
    ),
    st.from_regex(r"\A[a-z0-9]{1,10}\Z"),
    st.text(min_size=1, max_size=8).filter(lambda t: "\0" not in t and t != "no datatype"),
    st.sampled_from([NOW, 1, 946_684_799_999, 2**63 - 1]),
)

hostile = st.one_of(
    truncated(),
    garbage,
    wrong_types,
    huge_arrays,
    unknown_aliases(),
    absurd_times(),
    topic_injection,
    bad_births,
)


async def dead_letters(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM dead_letter")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def reasons(url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT reason, count(*) FROM dead_letter GROUP BY 1")
        return {str(r): int(n) for r, n in await cur.fetchall()}


@settings(  # no shrinking: the worker is shared by all examples, so a smaller example
    max_examples=EXAMPLES,  # proves nothing once it died; the failure says what it met
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    print_blob=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(messages=st.lists(hostile, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
async def test_hostile_messages_become_dead_letters(
    plant: Plant, messages: list[tuple[str, bytes]]
) -> None:
    assert not plant.task.done(), f"the worker had stopped: {plant.task.exception()!r}"
    pending = []
    for topic, payload in messages:
        full = f"spBv1.0/{plant.group}/DDATA/N/D" if topic == "VICTIM" else f"spBv1.0/{topic}"
        pending.append(plant.edge.publish_nowait(full, payload))
    await asyncio.wait_for(asyncio.gather(*pending), 60)
    plant.sent += len(messages)
    deadline = time.monotonic() + 60
    while (
        n := await dead_letters(plant.database_url)
    ) < plant.sent and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if plant.task.done():
        raise AssertionError("the worker stopped on this input") from plant.task.exception()
    counted = await reasons(plant.database_url)
    assert n == plant.sent, counted
    assert "internal_error" not in counted  # every message met a check made for it, no bug


async def test_worker_still_stores_after_the_fuzz(plant: Plant) -> None:
    """The same worker setup: a good message after hostile ones is stored."""
    await plant.edge.publish(f"spBv1.0/{plant.group}/DDATA/N/D", b"\x0a\xff")  # junk first
    good = data([Metric(alias=1, datatype=DataType.Double, value=42.0, timestamp=NOW + 1)])
    await plant.edge.publish(f"spBv1.0/{plant.group}/DDATA/N/D", good)
    deadline = time.monotonic() + 10
    async with await psycopg.AsyncConnection.connect(plant.database_url) as conn:
        while time.monotonic() < deadline:
            cur = await conn.execute("SELECT count(*) FROM sample_num WHERE value = 42")
            if (await cur.fetchone() or (0,))[0] == 1:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the good message was not stored")
