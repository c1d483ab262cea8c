"""The ``sim`` command: run a scenario's simulated factory, inject faults, list scenarios."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plantwire_bus.arguments import number

from .scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario

if TYPE_CHECKING:
    from .factory import Factory
    from .truth import TruthRecorder

_QUIET_LOGGERS = ("asyncua", "pymodbus")
_ALL = "opcua,modbus,mqtt"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` with its subcommands to the root CLI."""
    sim = subparsers.add_parser(
        "sim",
        help="simulated factory (OPC UA, Modbus TCP and MQTT machines driven by a scenario)",
        description="Simulated machines that behave like a shop floor: OPC UA CNCs and PLC "
        "lines, Modbus TCP legacy machines, MQTT stations and energy boxes.",
    )
    commands = sim.add_subparsers(
        title="commands", dest="sim_command", metavar="COMMAND", required=True
    )

    run = commands.add_parser(
        "run",
        help="serve a scenario's machines until Ctrl-C (or --duration)",
        description="Serve every simulated machine of the scenario. OPC UA hosts listen on "
        "opc.tcp://HOST:PORT/plantwire/PATH (security None), Modbus machines on their own "
        "ports; ports follow --base-port in scenario order (OPC UA first). MQTT devices "
        "publish vendor JSON to --mqtt-url. Times in the scenario are simulated seconds after "
        "--start, or local times of a site (a fault's or an outage's 'at').",
    )
    _scenario_args(run)
    run.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="append the ground truth (states, values, parts, faults) to FILE as JSON Lines",
    )
    run.add_argument(
        "--truth-states-only",
        action="store_true",
        help="leave tag values out of the truth file (states, parts and faults "
        "only: much smaller at high speed)",
    )
    run.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed for phases, events and noise, instead of the scenario's own",
    )
    run.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        metavar="N",
        help="simulated seconds per wall second (default: %(default)s)",
    )
    run.add_argument(
        "--start",
        metavar="ISO8601",
        help="simulated start, e.g. 2025-03-03T06:00:00+08:00 (default: now)",
    )
    run.add_argument(
        "--catch-up",
        action="store_true",
        help="with --start in the past and --speed > 1: replay at --speed until simulated "
        "time reaches now, then keep pace with the wall clock",
    )
    run.add_argument(
        "--clock-file",
        type=Path,
        metavar="FILE",
        help="publish the simulated clock in FILE for edge gateways on this machine "
        "('plantwire edge run --clock-file FILE'): with --speed they stamp births, deaths "
        "and polled values on the machines' time line, slowing down when the simulator does",
    )
    run.add_argument(
        "--hold-start",
        action="store_true",
        help="with --control: serve the machines with simulated time held at the start "
        "until a 'go' request on the control port (gateways connect and are born first)",
    )
    run.add_argument(
        "--linger",
        action="store_true",
        help="with --duration: keep serving (machines at their last values, uplink relays "
        "open) after the run until stopped, so that gateways can forward what they hold",
    )
    run.add_argument(
        "--gateway-configs",
        type=Path,
        metavar="DIR",
        help="once every machine listens, write the edge gateway config of each site to "
        "DIR/<edge_node>.toml (the addresses actually used, so --base-port 0 works), then "
        "DIR/ready",
    )
    run.add_argument(
        "--primary-host-id",
        default="plantwire",
        help="with --gateway-configs: the Sparkplug host the gateways wait for "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--duration",
        type=_positive,
        metavar="SECONDS",
        help="stop after this many simulated seconds",
    )
    run.add_argument(
        "--control",
        type=_port,
        metavar="PORT",
        help="listen for fault injection on this TCP port (see 'sim fault')",
    )
    run.add_argument("--control-host", default="127.0.0.1", help="(default: %(default)s)")
    run.set_defaults(func=run_command)

    lst = commands.add_parser(
        "list", help="list the built-in scenarios", description="List the built-in scenarios."
    )
    lst.set_defaults(func=list_command)

    gw = commands.add_parser(
        "gateway-config",
        help="print the edge gateway config that reads 'sim run' of a scenario",
        description="Print (or write) the gateway config for every site of the scenario, "
        "with the addresses 'sim run' uses for the same --host, --base-port, --protocols, "
        "--layout and --topic-prefix (--base-port 0 cannot be predicted).",
    )
    _scenario_args(gw)
    gw.add_argument(
        "--primary-host-id",
        default="plantwire",
        help="Sparkplug host whose STATE the gateway waits for (default: "
        "%(default)s); empty string for none",
    )
    gw.add_argument(
        "--metrics",
        choices=("core", "all"),
        default="core",
        help="core: state and main values; all: every simulated tag",
    )
    gw.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="write one <edge_node>.toml per site into DIR instead of printing",
    )
    gw.set_defaults(func=gateway_config_command)

    reg = commands.add_parser(
        "registry",
        help="print the registry part of a scenario (for 'plantwire platform registry import')",
        description="Print (or write) the scenario's registry document: parks, chains, "
        "enterprises, sites, lines, processes and equipment, without behaviour "
        "(docs/registry.md).",
    )
    reg.add_argument(
        "--scenario",
        required=True,
        metavar="NAME|PATH",
        help="built-in scenario name (see 'sim list') or path to a .toml file",
    )
    reg.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of printing"
    )
    reg.set_defaults(func=registry_command)

    fault = commands.add_parser(
        "fault",
        help="inject a fault into a running 'sim run --control PORT'",
        description="Kinds: restart, drop, freeze, clock_jump, nan, out_of_range, "
        "bad_status, alarm_storm, malformed (which ones apply depends on the protocol; "
        "'sim status' lists them per machine).",
    )
    fault.add_argument("machine")
    fault.add_argument("kind")
    fault.add_argument(
        "--seconds", type=_positive, default=60.0, help="simulated seconds (default: %(default)s)"
    )
    fault.add_argument(
        "--rate",
        type=_positive,
        default=10.0,
        help="alarm_storm: alarms per simulated second (default: %(default)s)",
    )
    fault.add_argument(
        "--control",
        default="127.0.0.1:4999",
        metavar="HOST:PORT",
        help="control port of 'sim run' (default: %(default)s)",
    )
    fault.set_defaults(func=fault_command)

    st = commands.add_parser(
        "status",
        help="simulated time and faults of a running 'sim run'",
        description="Print the status of a running 'sim run' as JSON.",
    )
    st.add_argument("--control", default="127.0.0.1:4999", metavar="HOST:PORT")
    st.set_defaults(func=status_command)


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scenario",
        required=True,
        metavar="NAME|PATH",
        help="built-in scenario name (see 'sim list') or path to a .toml file",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on and to put in addresses (default: %(default)s)",
    )
    p.add_argument(
        "--base-port",
        type=_port,
        default=4840,
        metavar="PORT",
        help="first port; 0 lets the OS pick free ports (default: %(default)s)",
    )
    p.add_argument(
        "--protocols", default=_ALL, type=_protocols, help="which simulators (default: %(default)s)"
    )
    p.add_argument(
        "--mqtt-url",
        default=os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="broker of the MQTT devices (default: $MQTT_URL or %(default)s)",
    )
    p.add_argument(
        "--topic-prefix",
        default="plant",
        help="MQTT topics are PREFIX/ENTERPRISE/SITE/MACHINE (default: %(default)s)",
    )
    p.add_argument(
        "--layout",
        choices=("machine", "site", "fleet"),
        help="OPC UA servers per machine, site or fleet (default: the scenario's)",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {port}")
    return port


_positive = number(0, above=True)


def _protocols(text: str) -> frozenset[str]:
    chosen = frozenset(p.strip() for p in text.split(",") if p.strip())
    unknown = chosen - set(_ALL.split(","))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"protocols are a comma list of {_ALL}")
    return chosen


def _load(name: str) -> Scenario | None:
    try:
        return load_scenario(name)
    except ScenarioError as exc:
        print(f"plantwire sim: {exc}", file=sys.stderr)
        return None


def run_command(args: argparse.Namespace) -> int:
    """``sim run``: 0 on a clean stop, 2 on bad input, 1 when the simulators fail."""
    scenario = _load(args.scenario)
    if scenario is None:
        return 2
    from .clock import parse_start

    try:
        start_ms = parse_start(args.start) if args.start else None
    except ValueError as exc:
        print(f"plantwire sim: --start: {exc}", file=sys.stderr)
        return 2
    if args.hold_start and args.control is None:
        print("plantwire sim: --hold-start needs --control (where 'go' is sent)", file=sys.stderr)
        return 2
    if not any(m.protocol in args.protocols for _, _, m in scenario.machines()):
        print(
            f"plantwire sim: scenario {scenario.name!r} has no machine speaking "
            f"{', '.join(sorted(args.protocols))}",
            file=sys.stderr,
        )
        return 2
    for name in _QUIET_LOGGERS:  # the simulators report their own failures, once
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from .truth import TruthRecorder

    try:
        truth = (
            TruthRecorder(args.truth, keep=False, values=not args.truth_states_only)
            if args.truth is not None
            else None
        )
    except OSError as exc:
        print(
            f"plantwire sim: cannot open truth file {args.truth}: {exc.strerror}", file=sys.stderr
        )
        return 2
    try:
        asyncio.run(_serve(scenario, args, truth, start_ms))
    except KeyboardInterrupt:  # where signal handlers cannot be installed
        return 0
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"plantwire sim: a port is in use ({exc.strerror}): choose another --base-port, "
                "or --base-port 0 for free ports",
                file=sys.stderr,
            )
        else:
            print(f"plantwire sim: {exc}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:
        print(f"plantwire sim: {exc}", file=sys.stderr)
        return 1
    finally:
        if truth is not None:
            truth.close()
    return 0


async def _serve(
    scenario: Scenario, args: argparse.Namespace, truth: TruthRecorder | None, start_ms: int | None
) -> None:
    from .control import serve_control
    from .factory import run_factory

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with run_factory(
            scenario,
            args.host,
            args.base_port,
            truth,
            seed=args.seed,
            protocols=args.protocols,
            mqtt_url=args.mqtt_url,
            topic_prefix=args.topic_prefix,
            speed=args.speed,
            start_ms=start_ms,
            until_s=args.duration,
            layout=args.layout,
            catch_up=args.catch_up,
            clock_file=args.clock_file,
            held=args.hold_start,
        ) as factory:
            # the servers' address spaces are large and live as long as the process: keep them
            # out of the cyclic garbage collector, whose full passes would stop every simulator
            # for most of a second (at --speed 20, twenty simulated seconds)
            gc.freeze()
            print(
                f"scenario {scenario.name!r}: {len(factory.players)} simulated machines, "
                f"seed {factory.seed}, speed {args.speed:g}x, started in "
                f"{factory.startup_s:.1f} s"
            )
            _print_machines(factory.machines)
            control = None
            if args.control is not None:
                control = await serve_control(factory, args.control_host, args.control)
                bound = control.sockets[0].getsockname()
                print(
                    f"control port {bound[0]}:{bound[1]} (plantwire sim fault --control "
                    f"{bound[0]}:{bound[1]} MACHINE KIND)"
                )
            if truth is not None and truth.path is not None:
                print(f"ground truth -> {truth.path}")
            if args.gateway_configs is not None:
                _write_gateway_configs(factory, scenario, args)
            print("press Ctrl-C to stop", flush=True)
            finished = asyncio.ensure_future(factory.finished.wait())
            stopped = asyncio.ensure_future(stop.wait())
            live = asyncio.ensure_future(_announce_live(factory))
            await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if factory.finished.is_set():
                print(
                    f"played {args.duration:g} simulated seconds "
                    f"({factory.truth.count} truth records)",
                    flush=True,
                )
                if args.linger:
                    await stopped
            for fut in (finished, stopped, live):
                fut.cancel()
            if control is not None:
                control.close()
                await control.wait_closed()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


REPLAY_DONE = "replay done"
"""How ``sim run`` starts the line saying that a replay has reached the wall clock."""


async def _announce_live(factory: Factory) -> None:
    """Say when a replay (``--catch-up``) reaches the wall clock and running live begins, and
    how much the simulator had to slow down to keep its values and its clock together."""
    from .mqtt_device import iso_ms

    clock = factory.clock
    if not clock.catch_up:
        return
    while not clock.live():  # noqa: ASYNC110 - time passing is no event to wait for
        await asyncio.sleep(0.2)
    print(
        f"{REPLAY_DONE}: simulated time reached the wall clock at {iso_ms(clock.now_ms())}; "
        f"running live from now on (the replay was slowed down by {clock.slowed_s:.1f} wall "
        "seconds to keep up with the machines)",
        flush=True,
    )


def _write_gateway_configs(factory: Factory, scenario: Scenario, args: argparse.Namespace) -> None:
    """One gateway config per site with served machines, written whole before ``ready``."""
    from .gateway_config import to_toml

    folder: Path = args.gateway_configs
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ready").unlink(missing_ok=True)
    served = set(factory.endpoints) | set(factory.modbus) | set(factory.mqtt_topics)
    for enterprise in scenario.enterprises:
        for site in enterprise.sites:
            if not any(m.code in served for m in site.machines):
                continue
            relay = factory.uplinks.get(site.code)
            uplink = relay.url(args.mqtt_url) if relay is not None else args.mqtt_url
            config = factory.gateway_config(
                enterprise, site, uplink, args.primary_host_id or None, args.protocols
            )
            path = folder / f"{site.edge_node}.toml"
            path.with_suffix(".tmp").write_text(to_toml(config), encoding="utf-8")
            path.with_suffix(".tmp").replace(path)
            print(f"gateway config -> {path}")
    (folder / "ready").write_text("", encoding="utf-8")


def _print_machines(machines: dict[str, Any]) -> None:
    width = max((len(code) for code in machines), default=0)
    for code, endpoint in machines.items():
        w = endpoint.describe()
        if endpoint.protocol == "modbus":
            text = f"modbus://{w['host']}:{w['port']} unit {w['unit_id']}"
        elif endpoint.protocol == "mqtt":
            text = f"{w['broker']} topic {w['topic']}"
        else:
            text = w["endpoint"]
        print(f"  {code:<{width}}  {text}")


def gateway_config_command(args: argparse.Namespace) -> int:
    """``sim gateway-config``: the gateway config(s) matching ``sim run``."""
    from .gateway_config import gateway_config, to_toml
    from .placement import plan

    scenario = _load(args.scenario)
    if scenario is None:
        return 2
    placement = plan(
        scenario, args.protocols, args.host, args.base_port, args.layout, args.topic_prefix
    )
    endpoints, modbus = placement.endpoints(), placement.modbus()
    host_id = args.primary_host_id or None
    documents = [
        (
            site.edge_node,
            to_toml(
                gateway_config(
                    e,
                    site,
                    endpoints,
                    args.mqtt_url,
                    host_id,
                    protocols=args.protocols,
                    modbus=modbus,
                    mqtt_topics=placement.topics,
                    metrics=args.metrics,
                )
            ),
        )
        for e in scenario.enterprises
        for site in e.sites
        if any(
            m.code in endpoints or m.code in modbus or m.code in placement.topics
            for m in site.machines
        )
    ]
    if args.output_dir is None:
        print("\n".join(text for _, text in documents), end="")
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for edge_node, text in documents:
        path = args.output_dir / f"{edge_node}.toml"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


def registry_command(args: argparse.Namespace) -> int:
    """``sim registry``: the scenario's registry document as TOML."""
    import tomli_w

    scenario = _load(args.scenario)
    if scenario is None:
        return 2
    text = f"# registry of scenario {scenario.name!r} (plantwire sim registry)\n" + tomli_w.dumps(
        scenario.registry()
    )
    if args.output is None:
        print(text, end="")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _control(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", _port(port)


def fault_command(args: argparse.Namespace) -> int:
    """``sim fault``: 0 when the fault was injected, 1 otherwise."""
    body = {
        "op": "fault",
        "machine": args.machine,
        "fault": args.kind,
        "seconds": args.seconds,
        "rate_per_s": args.rate,
    }
    return _call(args.control, body)


def status_command(args: argparse.Namespace) -> int:
    return _call(args.control, {"op": "status"})


def _call(control: str, body: dict[str, Any]) -> int:
    from .control import request

    try:
        host, port = _control(control)
        response = asyncio.run(request(host, port, body))
    except (OSError, ValueError, TimeoutError, argparse.ArgumentTypeError) as exc:
        print(f"plantwire sim: control port {control}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(response, indent=2))
    return 0 if response.get("ok") else 1


def list_command(args: argparse.Namespace) -> int:
    """``sim list``: the built-in scenarios; 2 if one of them does not load."""
    status = 0
    for name in builtin_scenarios():
        scenario = _load(name)
        if scenario is None:
            status = 2
            continue
        machines = [m for _, _, m in scenario.machines()]
        kinds = {p: sum(m.protocol == p for m in machines) for p in _ALL.split(",")}
        simulated = ", ".join(f"{n} {p}" for p, n in kinds.items() if n)
        print(
            f"{name}: {len(scenario.enterprises)} enterprises, {len(machines)} machines "
            f"({simulated or 'none simulated'})"
        )
        if scenario.description:
            print(f"    {scenario.description}")
    return status


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m plantwire_sim.cli sim ...``)."""
    parser = argparse.ArgumentParser(prog="plantwire")
    add_parser(parser.add_subparsers(title="commands", dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
