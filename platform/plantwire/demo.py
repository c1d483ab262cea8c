"""``plantwire demo``: the whole data path on one machine, one command, no configuration.

simulated machines (OPC UA) -> edge gateway -> MQTT broker -> ingest -> PostgreSQL -> API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from plantwire_bus.arguments import number

DEFAULT_SCENARIO = "demo"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("PLANTWIRE_DATA_DIR") or Path(base) / "plantwire" / "demo")


def add_parser(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run simulators, edge, broker, database, ingest and API in one process",
        description=(
            "Run the whole plantwire path on this machine: simulated machines over OPC UA, the "
            "edge gateway, an MQTT broker, PostgreSQL, the ingest and the HTTP API. "
            "Uses DATABASE_URL and MQTT_URL when set; otherwise an embedded PostgreSQL (data "
            "kept in --data-dir) and mosquitto from PATH (or an in-process Python broker). "
            "Stop with Ctrl-C."
        ),
    )
    demo.add_argument(
        "--scenario",
        default=DEFAULT_SCENARIO,
        help="built-in scenario name or TOML path (default: demo)",
    )
    demo.add_argument("--host", default="127.0.0.1", help="API listen address")
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="N",
        help="replay the last --hours of simulated production N times faster, then run live "
        "(default 1: live from now)",
    )
    demo.add_argument(
        "--hours",
        type=_hours,
        default=8.0,
        metavar="H",
        help="with --speed: how many hours before now the simulation starts (default 8)",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the embedded database and broker keep their data "
        "(default: $PLANTWIRE_DATA_DIR or ~/.local/share/plantwire/demo)",
    )
    demo.set_defaults(func=_main)


_speed = number(1, 10_000)
_hours = number(0, 24 * 366, above=True)


class Progress:
    """Numbered, timed progress lines on stdout."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.step = 0
        self.started = time.monotonic()

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        self.step += 1
        print(f"[{self.step}/{self.steps}] {what} ...", flush=True)
        yield

    def note(self, text: str) -> None:
        print(f"      {text}  ({time.monotonic() - self.started:.1f} s)", flush=True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _main(args: argparse.Namespace) -> int:
    from plantwire_sim.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"plantwire demo: {exc}", file=sys.stderr)
        return 2
    if not _port_free(args.host, args.port):
        print(
            f"plantwire demo: port {args.port} on {args.host} is in use; "
            "choose another with --port",
            file=sys.stderr,
        )
        return 2
    from plantwire_bus.runner import run_until_signalled

    data_dir: Path = args.data_dir or default_data_dir()

    async def main(stop: asyncio.Event) -> None:
        await run_demo(
            scenario,
            data_dir,
            args.host,
            args.port,
            stop,
            os.environ.get("DATABASE_URL"),
            os.environ.get("MQTT_URL"),
            speed=args.speed,
            hours=args.hours,
        )

    try:
        return asyncio.run(run_until_signalled(main))
    except DemoError as exc:
        print(f"plantwire demo: {exc}", file=sys.stderr)
        return 1


class DemoError(RuntimeError):
    pass


async def run_demo(
    scenario: Any,
    data_dir: Path,
    host: str,
    port: int,
    stop: asyncio.Event,
    database_url: str | None = None,
    mqtt_url: str | None = None,
    *,
    speed: float = 1.0,
    hours: float = 8.0,
) -> None:
    """Run everything until ``stop`` is set; services are provisioned when no URL is given.

    With ``speed`` > 1 the simulation starts ``hours`` ago and replays them ``speed`` times
    faster before it runs live; the edge gateways then run on the simulator's clock, so their
    Sparkplug sessions and the machines' timestamps share one time line.
    """
    import psycopg

    from plantwire_platform import services
    from plantwire_platform.database import migrate
    from plantwire_platform.registry.document import registry_from
    from plantwire_platform.registry.store import import_registry

    progress = Progress(6)
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        with progress("database"):
            if database_url:
                database = services.Service(database_url, "the database at DATABASE_URL")
            else:
                server = await asyncio.to_thread(services.embedded_postgres, data_dir / "pgdata")
                stack.callback(server.stop)
                url = await asyncio.to_thread(services.ensure_database, server.url, "plantwire")
                database = services.Service(url, server.description)
            await migrate(database.url)
            async with await psycopg.AsyncConnection.connect(database.url) as conn:
                ids = await import_registry(conn, registry_from(scenario.registry()))
            progress.note(f"{database.description}; registry of scenario {scenario.name!r}")
        with progress("MQTT broker"):
            broker = await services.start_broker(data_dir, mqtt_url)
            stack.callback(broker.stop)
            progress.note(broker.description)
        async with _components(
            stack, progress, scenario, database.url, broker.url, host, port, stop, speed, hours
        ):
            first = next(iter(ids.values()))
            base = f"http://{host}:{port}"
            print(
                f"\nplantwire demo is running ({len(scenario.machines())} machines in the "
                f"registry).\n"
                f"  API            {base}/api/v1/enterprises\n"
                f"  indicators     {base}/api/v1/enterprises/{first}/indicators\n"
                f"  OpenAPI docs   {base}/docs\n"
                f"  health         {base}/healthz\n"
                f"  database       {database.url}\n"
                f"  broker         {broker.url}\n"
                "Verified NC rates settle after about a minute of telemetry. "
                "Press Ctrl-C to stop.",
                flush=True,
            )
            await stop.wait()
            print("\nstopping ...", flush=True)
    print("stopped.", flush=True)


@contextlib.asynccontextmanager
async def _components(
    stack: contextlib.AsyncExitStack,
    progress: Progress,
    scenario: Any,
    database_url: str,
    mqtt_url: str,
    host: str,
    port: int,
    stop: asyncio.Event,
    speed: float = 1.0,
    hours: float = 0.0,
) -> AsyncIterator[None]:
    """Start every component; with ``speed`` > 1 the simulation replays the last ``hours``."""
    from plantwire_edge.config import EdgeConfig
    from plantwire_edge.gateway import Gateway
    from plantwire_platform.ingest.worker import IngestWorker
    from plantwire_platform.server import api_server
    from plantwire_platform.settings import PlatformSettings
    from plantwire_sim.factory import run_factory
    from plantwire_sim.placement import PROTOCOLS

    settings = PlatformSettings(
        database_url=database_url, mqtt_url=mqtt_url, api_host=host, api_port=port
    )
    edge_stop, ingest_stop = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        with progress("ingest"):
            ingest = IngestWorker(settings)
            tg.create_task(ingest.run(ingest_stop))
            await _ready(ingest.ready, "ingest")
        with progress("HTTP API"):
            server = api_server(settings)
            api = tg.create_task(server.serve())
            while not server.started:
                if api.done():
                    raise DemoError(f"the API could not start on {host}:{port}")
                await asyncio.sleep(0.05)
        with progress("simulated machines (OPC UA, Modbus TCP, MQTT)"):
            replay = speed > 1
            start_ms = round((time.time() - hours * 3600) * 1000) if replay else None
            fleet = await stack.enter_async_context(
                run_factory(
                    scenario,
                    base_port=0,
                    mqtt_url=mqtt_url,
                    speed=speed,
                    start_ms=start_ms,
                    catch_up=True,
                )
            )
            progress.note(
                f"{len(fleet.endpoints)} OPC UA, {len(fleet.modbus)} Modbus, "
                f"{len(fleet.mqtt_topics)} MQTT machines"
                + (f"; replaying the last {hours:g} h at {speed:g}x" if replay else "")
            )
        with progress("edge gateway"):
            gateways = []
            for enterprise in scenario.enterprises:
                for site in enterprise.sites:
                    config = EdgeConfig.model_validate(
                        fleet.gateway_config(
                            enterprise, site, mqtt_url, settings.host_id, protocols=PROTOCOLS
                        )
                    )
                    gateway = Gateway(config, clock=fleet.clock)
                    gateways.append(tg.create_task(gateway.run(edge_stop)))
            progress.note(f"{len(gateways)} gateway(s) publishing Sparkplug B")
        # everything started so far (the simulators' address spaces above all) lives as long
        # as the demo: out of the cyclic garbage collector, whose full passes would stop the
        # event loop for most of a second (minutes of simulated time with --speed)
        gc.freeze()
        try:
            yield
        finally:
            edge_stop.set()  # gateways first, so their last messages are stored
            await asyncio.gather(*gateways, return_exceptions=True)
            await asyncio.sleep(0.5)
            ingest_stop.set()
            server.should_exit = True


async def _ready(event: asyncio.Event, what: str, timeout: float = 30) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError as exc:
        raise DemoError(f"{what} did not become ready within {timeout:.0f} s") from exc
