"""The time line of an accelerated simulation, shared by the processes that stamp on it.

Simulated time is ``start_ms + (wall - wall0) * 1000 * speed`` epoch milliseconds, never
later than the wall clock when ``catch_up`` (a replay of the past that then runs live), and
never later than ``hold_ms``: the simulator holds its clock at the next change it has not
played yet, so that nothing stamped on this time line (a gateway's Modbus reads, births and
deaths) can be later than a machine state it does not show yet. When the simulator plays a
change late it moves ``wall0`` forward instead of letting time jump: simulated time slows
down, it never parts from the values.

The simulator publishes its :class:`TimeLine` in a small memory-mapped file
(:class:`TimeLineFile`), rewritten at every change; a gateway in another process follows it
with :class:`FollowedClock` (``plantwire edge run --clock-file``), reading it at every stamp.
The wall clock is this host's, so both must run on one machine.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_MAGIC = 0x504C5457  # "PLTW"
_LAYOUT = struct.Struct("<IIqqddq")  # magic, seq, start_ms, hold_ms, speed, wall0, catch_up
NO_HOLD = 2**62
"""``hold_ms`` when nothing holds the clock."""


class TimeLineUnavailable(RuntimeError):
    """The file holds no time line (missing, empty or not written by a simulator)."""


@dataclass(frozen=True, slots=True)
class TimeLine:
    """Parameters of simulated time (see the module docstring)."""

    start_ms: int
    speed: float
    wall0: float
    catch_up: bool = False
    hold_ms: int = NO_HOLD

    def at(self, wall: float) -> int:
        """Simulated epoch milliseconds at wall time ``wall`` (epoch seconds)."""
        sim = self.start_ms + round((wall - self.wall0) * 1000 * self.speed)
        if self.catch_up:
            sim = min(sim, round(wall * 1000))
        return min(sim, self.hold_ms)

    def free_at(self, wall: float) -> int:
        """Simulated time at ``wall`` were nothing holding it."""
        sim = self.start_ms + round((wall - self.wall0) * 1000 * self.speed)
        return min(sim, round(wall * 1000)) if self.catch_up else sim

    def wall_at(self, sim_ms: int) -> float:
        """Wall time (epoch seconds) at which free-running simulated time reaches ``sim_ms``."""
        wall = self.wall0 + (sim_ms - self.start_ms) / 1000 / self.speed
        return max(wall, sim_ms / 1000) if self.catch_up else wall

    def live_at(self, wall: float) -> bool:
        """Whether a replay (``catch_up``) has reached the wall clock at ``wall``."""
        free = self.start_ms + round((wall - self.wall0) * 1000 * self.speed)
        return self.catch_up and free >= round(wall * 1000)


class TimeLineFile:
    """The simulator's side: publishes a :class:`TimeLine` to ``path`` (created or replaced)."""

    def __init__(self, path: Path, line: TimeLine) -> None:
        self.path = path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as out:
            out.write(b"\0" * _LAYOUT.size)
        fd = os.open(tmp, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        self._seq = 0
        self.write(line)
        tmp.replace(path)  # readers never see a file without a time line

    def write(self, line: TimeLine) -> None:
        # a sequence lock: odd while writing, so that a reader retries a torn read
        self._seq += 1
        struct.pack_into("<I", self._map, 4, self._seq)
        self._map[0 : _LAYOUT.size] = _pack(line, self._seq)
        self._seq += 1
        struct.pack_into("<I", self._map, 4, self._seq)

    def close(self) -> None:
        self._map.close()


def _pack(line: TimeLine, seq: int) -> bytes:
    return _LAYOUT.pack(
        _MAGIC, seq, line.start_ms, line.hold_ms, line.speed, line.wall0, int(line.catch_up)
    )


def read_time_line(view: mmap.mmap | bytes, attempts: int = 100) -> TimeLine | None:
    """The time line in a mapped (or read) file; None when every attempt met the simulator
    writing it (it can be descheduled in the middle of a write on a busy machine)."""
    for _ in range(attempts):
        magic, seq, start_ms, hold_ms, speed, wall0, catch_up = _LAYOUT.unpack_from(view)
        if magic != _MAGIC:
            raise TimeLineUnavailable("not a plantwire simulation time line")
        if seq % 2 == 0 and struct.unpack_from("<I", view, 4)[0] == seq:
            return TimeLine(start_ms, speed, wall0, bool(catch_up), hold_ms)
    return None


class FollowedClock:
    """A gateway clock on the time line a simulator publishes in ``path`` (never backwards)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise TimeLineUnavailable(f"{path}: {exc.strerror}") from None
        try:
            if os.fstat(fd).st_size < _LAYOUT.size:
                raise TimeLineUnavailable(f"{path}: not a plantwire simulation time line")
            self._map = mmap.mmap(fd, _LAYOUT.size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        line = None
        deadline = time.monotonic() + 1.0
        while line is None and time.monotonic() < deadline:
            line = read_time_line(self._map)
        if line is None:
            raise TimeLineUnavailable(f"{path}: the simulator does not finish writing it")
        self.line = line
        self._last = 0
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        return self.line.speed

    def now_ms(self) -> int:
        # the simulator caught in the middle of a write: the line it is replacing held until now
        self.line = read_time_line(self._map) or self.line
        value = self.line.at(time.time())
        with self._lock:
            self._last = max(self._last, value)
            return self._last

    def close(self) -> None:
        self._map.close()
