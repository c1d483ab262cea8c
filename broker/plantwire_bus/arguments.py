"""Command-line argument types shared by the components' subcommands."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Callable


def number(
    low: float, high: float = float("inf"), *, above: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a number from ``low`` (excluded with ``above``) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > low if above else value >= low) or not value <= high:
            lower = f"more than {low:g}" if above else f"at least {low:g}"
            upper = f" and at most {high:g}" if high != float("inf") else ""
            raise argparse.ArgumentTypeError(f"must be {lower}{upper}: {text}")
        return value

    return parse


def port(text: str) -> int:
    """An argparse ``type``: a TCP port, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, not {value}")
    return value


def host(text: str) -> str:
    """An argparse ``type``: an IP address or a name this machine can resolve."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        try:
            socket.getaddrinfo(text, None)
        except OSError:
            raise argparse.ArgumentTypeError(f"not an address of this machine: {text!r}") from None
    return text
