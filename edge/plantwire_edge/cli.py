"""``plantwire edge``: check, run, discover, and create the gateway's OPC UA certificate."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from plantwire_bus.runner import run_until_signalled


def add_parser(subparsers: Any) -> None:
    edge = subparsers.add_parser(
        "edge",
        help="run the edge gateway",
        description="The edge gateway: read machines over OPC UA, Modbus TCP and MQTT and "
        "publish Sparkplug B to an MQTT broker, with a durable store-and-forward buffer.",
    )
    sub = edge.add_subparsers(dest="edge_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate a gateway config and exit",
        description="Validate CONFIG (and the files it names) without connecting to anything.",
    )
    check.add_argument("config", type=Path, help="gateway config file (TOML)")
    check.set_defaults(func=_check)
    run = sub.add_parser(
        "run",
        help="run the gateway until Ctrl-C",
        description="Validate CONFIG, then connect and publish until stopped.",
    )
    run.add_argument("config", type=Path, help="gateway config file (TOML)")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per log line (default: text)",
    )
    run.add_argument(
        "--clock-file",
        type=Path,
        metavar="FILE",
        help="stamp on the clock of an accelerated simulation on this machine, published by "
        "'plantwire sim run --clock-file FILE' (default: this machine's clock)",
    )
    run.set_defaults(func=_run)
    discover = sub.add_parser(
        "discover",
        help="browse an OPC UA server and write a config skeleton",
        description="Browse the variables of an OPC UA server (security None) and write a "
        "gateway config addressing them by namespace URI.",
    )
    discover.add_argument("endpoint", help="opc.tcp://HOST:PORT[/path]")
    discover.add_argument("-o", "--output", type=Path, help="write here (default: stdout)")
    discover.add_argument("--max-depth", type=int, default=8, help="browse depth (default 8)")
    discover.set_defaults(func=_discover)
    cert = sub.add_parser(
        "cert",
        help="create the gateway's OPC UA certificate",
        description="Create the self-signed application certificate (DER) and private key "
        "(PEM) named by the secure OPC UA devices of CONFIG, for the config's application "
        "URI. Existing valid files are kept. Give the certificate to the server's admin to "
        "trust.",
    )
    cert.add_argument("config", type=Path, help="gateway config file (TOML)")
    cert.set_defaults(func=_cert)


def _load(path: Path) -> Any:
    from plantwire_edge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"plantwire edge: {exc}", file=sys.stderr)
        return None


def _files_ok(config: Any, path: Path) -> bool:
    from plantwire_edge.config import missing_files

    problems = missing_files(config)
    for problem in problems:
        print(f"plantwire edge: {path}: {problem}", file=sys.stderr)
    return not problems


def _check(args: argparse.Namespace) -> int:
    from plantwire_edge.devices import MqttDevice, points

    config = _load(args.config)
    if config is None or not _files_ok(config, args.config):
        return 2
    kinds = Counter(d.kind for d in config.devices)
    count = sum(len(points(d)) for d in config.devices)
    buffer = config.buffer.path or "in memory (not durable: set [buffer] path)"
    print(
        f"{args.config}: OK: group {config.group_id}, edge node {config.edge_node_id}, "
        f"{len(config.devices)} devices ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
        f"{count} tags; buffer {buffer}"
    )
    for device in config.devices:
        warning = device.liveness_warning() if isinstance(device, MqttDevice) else None
        if warning is not None:
            print(f"{args.config}: warning: {device.device_id}: {warning}", file=sys.stderr)
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None or not _files_ok(config, args.config):
        return 2
    if args.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    if logging.getLogger().level > logging.DEBUG:  # the adapter reports connection failures
        logging.getLogger("pymodbus").setLevel(logging.ERROR)
    from plantwire_edge.buffer import BufferInUse
    from plantwire_edge.gateway import Gateway

    clock = None
    if args.clock_file is not None:
        from plantwire_bus.timeline import FollowedClock, TimeLineUnavailable

        try:
            clock = FollowedClock(args.clock_file)
        except TimeLineUnavailable as exc:
            print(f"plantwire edge: --clock-file: {exc}", file=sys.stderr)
            return 2
    try:
        gateway = Gateway(config, clock=clock)
    except BufferInUse as exc:
        print(f"plantwire edge: {exc}", file=sys.stderr)
        return 2
    from plantwire_edge.monitor import MonitorError

    try:
        return asyncio.run(run_until_signalled(gateway.run))
    except MonitorError as exc:
        print(f"plantwire edge: {exc}", file=sys.stderr)
        return 2


def _discover(args: argparse.Namespace) -> int:
    from plantwire_edge.discovery import browse, skeleton

    try:
        found, name = asyncio.run(browse(args.endpoint, max_depth=args.max_depth))
    except (OSError, TimeoutError) as exc:
        print(f"plantwire edge: cannot browse {args.endpoint}: {exc}", file=sys.stderr)
        return 1
    text = skeleton(args.endpoint, found, name)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        usable = sum(f.datatype is not None for f in found)
        print(f"{args.output}: {usable} tags from {args.endpoint}", file=sys.stderr)
    return 0


def _cert(args: argparse.Namespace) -> int:
    from plantwire_edge.config import OpcUaDevice
    from plantwire_edge.opcua_session import create_certificate

    config = _load(args.config)
    if config is None:
        return 2
    pairs = {
        (Path(d.certificate), Path(d.private_key))
        for d in config.devices
        if isinstance(d, OpcUaDevice) and d.certificate and d.private_key
    }
    if not pairs:
        print(
            f"plantwire edge: {args.config}: no OPC UA device names a certificate and private_key",
            file=sys.stderr,
        )
        return 2
    for certificate, key in sorted(pairs):
        written = asyncio.run(create_certificate(certificate, key, config.client_uri))
        state = "created" if written else "kept (still valid)"
        print(f"{certificate} and {key}: {state}; application URI {config.client_uri}")
    return 0
