"""Child processes of ``plantwire demo``: started in order, watched, restarted, stopped in
reverse order.

Each component is a ``plantwire`` subcommand (or a server binary) in a session of its own, so
Ctrl-C in the terminal reaches only the demo, which then stops the components itself: the
edge gateways first (their last messages are still stored), the broker and the database last.
A component's output goes to ``<logs>/<name>.log``; its warnings and errors are also shown in
the terminal, a few at a time. A component that dies is reported in one line (with its last
log lines when it failed on its own) and started again with a growing delay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

STOP_TIMEOUT_S = 3.0
RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_S = 60.0
"""A component that ran this long before dying is restarted after the shortest delay again."""
SHOWN_PER_MINUTE = 6
"""Warnings and errors of one component shown in the terminal per minute; the rest are only
in its log file."""
_ALERT = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM if the demo dies without stopping it (kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Component:
    """One process of the demo."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = True
    process: asyncio.subprocess.Process | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    restarts: int = 0
    started: float = 0.0
    stopping: bool = False
    _shown: list[float] = field(default_factory=list)
    _pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Starts, watches and stops the demo's components."""

    def __init__(self, logs: Path, out: TextIO = sys.stdout) -> None:
        self.logs = logs
        self.out = out
        self.components: list[Component] = []
        self.failed: list[str] = []
        self._watchers: list[asyncio.Task[None]] = []
        self.on_output: Callable[[Component, str], None] | None = None

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def start(self, component: Component) -> Component:
        """Start ``component`` and watch it until :meth:`stop`."""
        await self._spawn(component)
        self.components.append(component)
        self._watchers.append(asyncio.create_task(self._watch(component)))
        return component

    async def run_once(self, name: str, argv: Sequence[str], env: dict[str, str]) -> str:
        """Run a one-shot command (a migration, an import) to its end; its output, or raise
        :class:`ComponentFailed` with its last lines."""
        component = Component(name, argv, env, restart=False)
        await self._spawn(component)
        assert component.process is not None and component._pump is not None
        code = await component.process.wait()
        await self._drain(component)
        if code != 0:
            raise ComponentFailed(component, code, self.log_path(name))
        return "\n".join(component.tail)

    async def _spawn(self, component: Component) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **component.env}
        component.process = await asyncio.create_subprocess_exec(
            *component.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        component.started = time.monotonic()
        component._pump = asyncio.create_task(self._read(component, component.process))

    async def _read(self, component: Component, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with self.log_path(component.name).open("a", encoding="utf-8") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {process.pid} ---\n")
            while raw := await process.stdout.readline():
                line = raw.decode(errors="replace").rstrip("\n")
                log.write(line + "\n")
                log.flush()
                component.tail.append(line)
                if self.on_output is not None:
                    self.on_output(component, line)
                if _ALERT.search(line) and not component.stopping:
                    self._show(component, line)

    def _show(self, component: Component, line: str) -> None:
        now = time.monotonic()
        recent = [t for t in component._shown if now - t < 60]
        if len(recent) < SHOWN_PER_MINUTE:
            self.say(f"  {component.name} | {line}")
        elif len(recent) == SHOWN_PER_MINUTE:
            self.say(f"  {component.name} | (more in {self.log_path(component.name)})")
        else:
            return
        component._shown = [*recent, now]

    async def _watch(self, component: Component) -> None:
        while True:
            assert component.process is not None and component._pump is not None
            code = await component.process.wait()
            await self._drain(component)
            if component.stopping:
                return
            report = f"{component.name} (pid {component.pid}) died: {describe_exit(code)}"
            if time.monotonic() - component.started > STABLE_S:
                component.restarts = 0
            if not component.restart:
                self.say(f"plantwire demo: {report}; log {self.log_path(component.name)}")
                self.failed.append(component.name)
                return
            delay = RESTART_DELAYS_S[min(component.restarts, len(RESTART_DELAYS_S) - 1)]
            self.say(f"plantwire demo: {report}; restarting in {delay:g} s")
            if code > 0:
                for line in component.tail:
                    self.say(f"  {component.name} | {line}")
            self.failed.append(component.name)
            component.restarts += 1
            await asyncio.sleep(delay)
            if component.stopping:
                return
            await self._spawn(component)

    async def stop(self, order: Sequence[Sequence[str]] | None = None) -> None:
        """Stop every component: the groups of ``order`` (names) one after another, the
        members of a group together, then the rest in reverse start order."""
        named = {c.name: c for c in self.components}
        groups = [[named[n] for n in group if n in named] for group in order or ()]
        grouped = {c.name for g in groups for c in g}
        groups += [[c] for c in reversed(self.components) if c.name not in grouped]
        for group in groups:
            await asyncio.gather(*(self._stop(c) for c in group))
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def _stop(self, component: Component) -> None:
        component.stopping = True
        process = component.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.say(
                f"plantwire demo: {component.name} did not stop in {STOP_TIMEOUT_S:g} s: killed"
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        await self._drain(component)

    async def _drain(self, component: Component) -> None:
        """Read what the exited process left in its output; give up after a moment (a child
        of its own may still hold the pipe)."""
        if component._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(component._pump), 1.0)
            component._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await component._pump


class ComponentFailed(RuntimeError):
    """A one-shot command of the demo failed."""

    def __init__(self, component: Component, code: int, log: Path) -> None:
        last = "\n".join(f"  {component.name} | {line}" for line in component.tail)
        super().__init__(f"{component.name} failed ({describe_exit(code)}); log {log}\n{last}")
        self.component = component
