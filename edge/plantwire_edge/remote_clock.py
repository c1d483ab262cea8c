"""The clock of an accelerated simulation, followed from its control port.

``plantwire sim run --control PORT`` answers ``{"op": "status"}`` with the parameters of its
clock: simulated time ``start_ms`` at wall time ``wall0`` (epoch seconds), running ``speed``
times faster, and with ``catch_up`` never ahead of the wall clock. A gateway reading such
machines (``plantwire edge run --clock-from HOST:PORT``, as ``plantwire demo --speed`` does)
stamps births, deaths and gateway-stamped values on that time line. The parameters are read
again every few seconds, so a simulator that changes them is followed.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

REFRESH_S = 2.0


class ClockUnavailable(RuntimeError):
    """The control port did not answer with a clock."""


@dataclass(frozen=True, slots=True)
class ScaledTime:
    start_ms: int
    speed: float
    wall0: float
    catch_up: bool

    def at(self, wall: float) -> int:
        sim = self.start_ms + round((wall - self.wall0) * 1000 * self.speed)
        return min(sim, round(wall * 1000)) if self.catch_up else sim


def read_clock(host: str, port: int, timeout: float = 2.0) -> ScaledTime:
    """The clock parameters of the simulator listening on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b'{"op": "status"}\n')
            with sock.makefile("rb") as reply:
                answer: Any = json.loads(reply.readline())
        state = answer["clock"]
        return ScaledTime(
            int(state["start_ms"]),
            float(state["speed"]),
            float(state["wall0"]),
            bool(state["catch_up"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClockUnavailable(f"no simulator clock at {host}:{port}: {exc}") from exc


class RemoteClock:
    """A gateway clock in step with a simulator's (see the module docstring)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.time = read_clock(host, port)
        self._last = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._refresh, name="remote-clock", daemon=True).start()

    def now_ms(self) -> int:
        value = self.time.at(time.time())
        with self._lock:  # never backwards, even when the parameters change
            self._last = max(self._last, value)
            return self._last

    def close(self) -> None:
        self._stop.set()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.time = read_clock(*self.address)
            except ClockUnavailable as exc:
                log.warning("%s; keeping the last known clock", exc)
