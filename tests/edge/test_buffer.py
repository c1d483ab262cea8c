"""The store-and-forward buffer on a real SQLite file: reopening, acknowledgement, overflow
policies, and survival of kill -9 in the middle of writing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from plantwire_bus.payload import DataType
from plantwire_edge.buffer import DROPPED, Buffer, BufferInUse, Sample

T0 = 1_767_225_600_000


def samples(key: int, n: int, start: int = 0) -> list[Sample]:
    return [(key, float(i), T0 + i) for i in range(start, start + n)]


def test_batches_survive_reopen_in_order(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    buf = Buffer(path)
    assert buf.open() == []
    a = buf.metric_key("M1", "Spindle/Speed", DataType.Double)
    b = buf.metric_key("M2", "State/Mode", DataType.String)
    assert buf.metric_key("M1", "Spindle/Speed", DataType.Double) == a
    buf.set_meta("bd_seq", "7")
    stored, _ = buf.write([("M1", samples(a, 3), True), ("M2", [(b, "AUTO", T0)], False)], [])
    stored2, _ = buf.write([("M1", samples(a, 2, start=3), True)], [stored[1]])  # M2 acked
    buf.close()

    again = Buffer(path)
    queued = again.open()
    assert [(q.id, q.device, q.count) for q in queued] == [
        (stored[0].id, "M1", 3),
        (stored2[0].id, "M1", 2),
    ]
    assert [again.load(q) for q in queued] == [samples(a, 3), samples(a, 2, start=3)]
    assert all(not q.live for q in queued)  # whatever is read back is history
    assert again.metrics[a].name == "Spindle/Speed" and again.metrics[b].datatype is DataType.String
    assert again.meta("bd_seq") == "7"
    assert again.stats.depth_values == 5
    assert again.oldest_ts() == T0
    # new batches continue the id sequence
    later, _ = again.write([("M1", samples(a, 1), True)], queued)
    assert later[0].id > stored2[0].id and again.stats.depth_values == 1
    again.close()


def test_drop_oldest_counts_what_it_drops(tmp_path: Path) -> None:
    buf = Buffer(str(tmp_path / "buf.db"), max_values=1000, overflow="drop_oldest")
    buf.open()
    first, _ = buf.write([("M1", samples(1, 600), True)], [])
    _, dropped = buf.write([("M1", samples(1, 600, start=600), True)], [])
    assert dropped == first and first[0].state == DROPPED
    assert (buf.stats.dropped_values, buf.stats.depth_values) == (600, 600)
    buf.write([], first)  # a late PUBACK for a dropped batch changes nothing
    assert (buf.stats.acked_values, buf.stats.depth_values) == (0, 600)
    buf.close()
    assert [q.count for q in Buffer(str(tmp_path / "buf.db")).open()] == [600]


def test_drop_newest_refuses_and_counts(tmp_path: Path) -> None:
    buf = Buffer(str(tmp_path / "buf.db"), max_values=1000, overflow="drop_newest")
    buf.open()
    buf.write([("M1", samples(1, 900), True)], [])
    stored, _ = buf.write([("M1", samples(1, 200), True)], [])
    assert stored == [] and buf.stats.dropped_values == 200 and buf.stats.depth_values == 900
    buf.close()


def test_memory_buffer_behaves_the_same_without_a_file() -> None:
    buf = Buffer(None, max_values=1000)
    assert buf.open() == [] and not buf.durable
    stored, _ = buf.write([("M1", samples(1, 10), True)], [])
    assert buf.load(stored[0]) == samples(1, 10)
    buf.write([], stored)
    assert buf.stats.depth_values == 0 and buf.stats.acked_values == 10


WRITER = """
import sys
from plantwire_edge.buffer import Buffer
buf = Buffer(sys.argv[1])
buf.open()
key = buf.metric_key("M1", "Counter", __import__("plantwire_bus.payload").payload.DataType.UInt32)
n = 0
while True:
    buf.write([("M1", [(key, n + i, 1767225600000 + n + i) for i in range(100)], True)], [])
    n += 100
    print(n, flush=True)  # reported only after the commit returned
"""


async def test_committed_batches_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    reported = 0
    while reported < 20_000:
        reported = int(await proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    buf = Buffer(str(path))
    queued = buf.open()
    values = [sample[1] for q in queued for sample in buf.load(q)]
    assert len(values) >= reported  # everything committed is there
    assert values == list(range(len(values)))  # in order, nothing doubled, no gap
    buf.close()


def test_a_buffer_file_serves_one_gateway_at_a_time(tmp_path: Path) -> None:
    first = Buffer(str(tmp_path / "buf.db"))
    first.open()
    with pytest.raises(BufferInUse, match="used by another running gateway"):
        Buffer(str(tmp_path / "buf.db")).open()
    first.close()
    second = Buffer(str(tmp_path / "buf.db"))
    second.open()  # free again once closed (or once its process died)
    second.close()
