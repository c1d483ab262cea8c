"""An NDEATH on its edge node's time line (issue 14, one time line per device), against a real
Mosquitto, a real PostgreSQL and the ingest worker: a plantwire edge node whose clock is an
hour behind, or runs at 60 times the wall clock, vanishes without a word (its connection cut,
the broker publishes its Will) and its death is stamped on the node's own line; a third-party
node that does not declare its clock rate is stamped with the arrival time, as before. Under a
shared subscription the Will may reach a worker that saw nothing of the node: it places the
death from the node's row, on the same line.

The bounds are measured, not assumed. The ingest stamps ``payload timestamp of the node's last
message + (arrival of the death - arrival of that message) x rate``, which is the node's clock
at the death's arrival less ``rate x`` the last message's delivery delay. So it lies between
the node's clock when the connection was cut less ``rate x`` (the wall time from the last
value put until the test saw it stored: that delay's upper bound) and the node's clock when
the test saw the death stored; and never before the last value.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from plantwire_bus.mqtt import MqttClient, Will, parse_mqtt_url
from plantwire_bus.payload import DataType, Metric, Payload, encode_payload
from plantwire_bus.timeline import TimeLine
from plantwire_bus.topics import MessageType, Topic
from plantwire_edge.node import EdgeNode
from plantwire_platform.ingest.worker import IngestWorker
from tests.edge.test_node import config

from .test_worker import WorkerFactory, query, shared_settings, start_worker, until_rows

__all__ = ["start_worker"]  # the fixture

HOUR_MS = 3_600_000


class NodeClock:
    """A gateway clock ``offset_ms`` off the wall clock now and running at ``speed`` (the
    time line of a simulator it follows)."""

    def __init__(self, speed: float, offset_ms: int) -> None:
        wall0 = time.time()
        self.line = TimeLine(round(wall0 * 1000) + offset_ms, speed, wall0)

    @property
    def speed(self) -> float:
        return self.line.speed

    def at(self, wall: float) -> int:
        return self.line.at(wall)

    def now_ms(self) -> int:
        return self.line.at(time.time())


async def _count_to_five(
    node: EdgeNode, clock: NodeClock, database_url: str, group: str
) -> tuple[float, int]:
    """Device M1 online, then its Count 1..5, 20 ms apart, until 5 is stored: the wall time
    and the node time of the last put."""
    dev = node.channel("M1")
    count = dev.metric("Count", DataType.UInt32)
    dev.set_online([(count, 0, clock.now_ms())])
    put_wall, last_value = 0.0, 0
    for i in range(1, 6):
        await asyncio.sleep(0.02)
        put_wall = time.time()
        last_value = clock.now_ms()
        dev.put(count, i, last_value)
    await until_rows(
        database_url,
        "SELECT 1 FROM sample_num t JOIN series s ON s.id = t.series_id"
        f" WHERE s.group_id = '{group}' AND t.value = 5",
    )
    return put_wall, last_value


def _death_sql(group: str, birth_ts: int) -> str:
    return (
        "SELECT b.death_ts, (extract(epoch FROM n.died_at) * 1000)::bigint,"
        " (extract(epoch FROM c.offline_at) * 1000)::bigint, n.clock_rate"
        " FROM sparkplug_birth b JOIN sparkplug_node n USING (group_id, edge_node_id)"
        " JOIN connectivity_session c ON c.group_id = b.group_id"
        "  AND c.edge_node_id = b.edge_node_id AND c.device_id = ''"
        f" AND (extract(epoch FROM c.online_at) * 1000)::bigint = {birth_ts}"
        f" WHERE b.group_id = '{group}' AND b.device_id = '' AND b.birth_ts = {birth_ts}"
        " AND b.death_ts IS NOT NULL"
    )


async def _vanish(
    node: EdgeNode, database_url: str, group: str, birth_ts: int
) -> tuple[float, list[tuple[Any, ...]], float]:
    """The node's connection cut without a DISCONNECT (the broker publishes its Will): the
    wall time of the cut, the rows of :func:`_death_sql` of its session born at ``birth_ts``
    once there are any, and the wall time they were seen."""
    assert node._client is not None
    cut_wall = time.time()
    node._client.drop_connection()
    rows = await until_rows(database_url, _death_sql(group, birth_ts))
    return cut_wall, rows, time.time()


@pytest.mark.parametrize(("speed", "offset_ms"), [(1.0, -HOUR_MS), (60.0, 0)])
async def test_a_vanished_plantwire_node_dies_on_its_own_time_line(
    start_worker: WorkerFactory,
    database_url: str,
    mqtt_url: str,
    unique: str,
    tmp_path: Path,
    speed: float,
    offset_ms: int,
) -> None:
    group = f"G{unique}"
    clock = NodeClock(speed, offset_ms)
    node = EdgeNode(config(group, mqtt_url, tmp_path / "buf.db", None), clock=clock)
    stop = asyncio.Event()
    async with start_worker():
        task = asyncio.create_task(node.run(stop))
        try:
            put_wall, last_value = await _count_to_five(node, clock, database_url, group)
            stored_wall = time.time()
            birth_ts = node.birth_ts
            cut_wall, [(death_ts, died_at, offline_at, rate)], seen_wall = await _vanish(
                node, database_url, group, birth_ts
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    assert rate == speed  # declared in the NBIRTH
    assert isinstance(death_ts, int)
    lo = clock.at(cut_wall) - round(speed * (stored_wall - put_wall) * 1000)
    hi = clock.at(seen_wall)
    assert lo <= death_ts <= hi, (death_ts - clock.at(cut_wall), lo - death_ts, hi - death_ts)
    assert death_ts >= last_value
    assert offline_at == death_ts  # the session ends there too
    # the arrival is stored beside it (platform clock), an hour or more off the node's line
    assert isinstance(died_at, int)
    assert round(cut_wall * 1000) - 1 <= died_at <= round(seen_wall * 1000) + 1
    assert abs(death_ts - died_at) > 0.9 * HOUR_MS if offset_ms else death_ts > died_at


async def test_a_third_party_node_without_a_clock_rate_dies_at_arrival(
    start_worker: WorkerFactory, database_url: str, mqtt_url: str, unique: str
) -> None:
    """A node that does not say how fast its clock runs (any third-party edge node), here
    with its clock an hour behind: its Will is stamped with the arrival, as by any host."""
    group = f"G{unique}"
    t = round(time.time() * 1000) - HOUR_MS
    bd_seq = Metric(name="bdSeq", datatype=DataType.Int64, value=0, timestamp=t)
    will = Will(
        str(Topic(group, MessageType.NDEATH, "N")), encode_payload(Payload(metrics=(bd_seq,)))
    )
    async with (
        start_worker(),
        MqttClient(parse_mqtt_url(mqtt_url), f"third-{unique}", will=will) as edge,
    ):
        birth = Payload(
            timestamp=t,
            seq=0,
            metrics=(
                bd_seq,
                Metric(name="Temp", alias=1, datatype=DataType.Double, value=1.0, timestamp=t),
            ),
        )
        await edge.publish(str(Topic(group, MessageType.NBIRTH, "N")), encode_payload(birth))
        data = Payload(
            timestamp=t + 1000,
            seq=1,
            metrics=(Metric(alias=1, datatype=DataType.Double, value=2.0, timestamp=t + 1000),),
        )
        await edge.publish(str(Topic(group, MessageType.NDATA, "N")), encode_payload(data))
        await until_rows(
            database_url,
            "SELECT 1 FROM sample_num t JOIN series s ON s.id = t.series_id"
            f" WHERE s.group_id = '{group}' AND t.value = 2",
        )
        cut_wall = time.time()
        edge.drop_connection()
        [(death_ts, died_at, offline_at, rate)] = await until_rows(
            database_url, _death_sql(group, t)
        )
        seen_wall = time.time()
    assert rate is None
    assert isinstance(death_ts, int)
    assert round(cut_wall * 1000) - 1 <= death_ts <= round(seen_wall * 1000) + 1  # arrival
    assert offline_at == death_ts
    assert isinstance(died_at, int) and abs(died_at - death_ts) < 1000  # both: the arrival


async def test_a_death_taken_by_the_worker_that_saw_nothing_of_the_node_is_on_its_line(
    database_url: str, mqtt_url: str, unique: str, tmp_path: Path
) -> None:
    """Two ingest workers on one shared subscription; a plantwire edge node at 60x whose
    births and data all went to the first, whose Will goes to the second: that worker has
    no track of the session and places the death from the node's row (its birth, the birth's
    arrival and declared rate). The death is on the node's line all the same, and the
    sessions of the node and its device end there.

    Made certain, not left to the broker's round robin: the first worker is alone in the
    group while the node is born and sends; then the second joins, and the first is stopped,
    which leaves the group (its session ended at the DISCONNECT: a persistent session that
    lived on would stay a member and be handed its share, queued). The second has taken
    nothing before the cut (its message count says so), and the group has no other member.

    The bounds: the node's clock at the death's arrival is its last message's time plus the
    wall time since, times 60; the worker's estimate from an anchor (birth or last message)
    is that less 60 x the anchor's delivery delay, bounded by the wall time from the
    message's stamp (its payload time on the node's line) until the test saw it stored."""
    group, speed = f"G{unique}", 60.0
    settings = shared_settings(database_url, mqtt_url, unique)
    first = IngestWorker(settings, client_suffix="first")
    second = IngestWorker(settings, client_suffix="second")
    stop_first, stop_second, stop_node = asyncio.Event(), asyncio.Event(), asyncio.Event()
    clock = NodeClock(speed, 0)
    node = EdgeNode(config(group, mqtt_url, tmp_path / "buf.db", None), clock=clock)
    first_task = asyncio.create_task(first.run(stop_first))
    second_task: asyncio.Task[None] | None = None
    node_task: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(first.ready.wait(), 10)
        node_task = asyncio.create_task(node.run(stop_node))
        [(stored_birth,)] = await until_rows(
            database_url, f"SELECT birth_ts FROM sparkplug_node WHERE group_id = '{group}'"
        )
        birth_ts = int(str(stored_birth))
        birth_delay = time.time() - clock.line.wall_at(birth_ts)  # stamp to stored, at most
        assert birth_ts == node.birth_ts
        put_wall, last_value = await _count_to_five(node, clock, database_url, group)
        data_delay = time.time() - put_wall
        # the second joins, the first leaves the group for good
        second_task = asyncio.create_task(second.run(stop_second))
        await asyncio.wait_for(second.ready.wait(), 10)
        stop_first.set()
        await asyncio.wait_for(first_task, 10)
        assert first.left_group  # stopped: its session ended, no longer a member
        assert first.stats.sparkplug_messages >= 2  # NBIRTH, DBIRTH (and the values' DDATA)
        assert second.stats.sparkplug_messages == 0  # nothing of the node: no track
        open_sessions = await query(  # the node's and its device's
            database_url,
            "SELECT device_id, online_at FROM connectivity_session"
            f" WHERE group_id = '{group}' AND offline_at IS NULL ORDER BY device_id",
        )
        assert [d for d, _ in open_sessions] == ["", "M1"]
        cut_wall, [(death_ts, died_at, offline_at, rate)], seen_wall = await _vanish(
            node, database_url, group, birth_ts
        )
        deaths = second.metrics.registry.get_sample_value(
            "plantwire_ingest_messages_total", {"worker": second.client_id, "type": "NDEATH"}
        )  # (the node, stopped, sends one more)
        ended = [
            await query(
                database_url,
                "SELECT (extract(epoch FROM offline_at) * 1000)::bigint FROM connectivity_session"
                f" WHERE group_id = '{group}' AND device_id = '{d}'"
                f" AND online_at = '{online_at.isoformat()}'",
            )
            for d, online_at in open_sessions
        ]
    finally:
        stop_node.set()
        stop_first.set()
        stop_second.set()
        running = [t for t in (node_task, first_task, second_task) if t is not None]
        await asyncio.wait_for(asyncio.gather(*running), 15)
    assert deaths == 1  # the second took the Will
    assert rate == speed
    assert isinstance(death_ts, int)
    slack_s = 0.001  # the millisecond roundings of the anchor's times, times the rate
    lo = clock.at(cut_wall) - round(speed * (max(birth_delay, data_delay) + slack_s) * 1000)
    hi = clock.at(seen_wall + slack_s)
    assert lo <= death_ts <= hi, (death_ts - clock.at(cut_wall), lo - death_ts, hi - death_ts)
    assert death_ts >= last_value
    assert offline_at == death_ts
    assert ended == [[(death_ts,)], [(death_ts,)]]  # the sessions open at the cut end there
    assert isinstance(died_at, int)
    assert round(cut_wall * 1000) - 1 <= died_at <= round(seen_wall * 1000) + 1
