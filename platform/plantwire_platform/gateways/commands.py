"""``plantwire platform broker init`` and ``plantwire platform gateway provision|revoke``: the
broker's CA, server certificate and host login, and one credential per gateway (shown once,
stored hashed), with the broker's password file and ACL rewritten and Mosquitto reloaded."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from plantwire_platform.command import Action, Command, id_of


def add_parsers(sub: Any, command: Command) -> None:
    """The ``broker`` and ``gateway`` actions."""
    env_help = command.env_help

    def action(name: str, does: Action) -> Any:
        def run(args: argparse.Namespace) -> int:
            from plantwire_platform.gateways.provisioning import ProvisioningError

            return command.run(args, name, does, (ProvisioningError,))

        return run

    broker = sub.add_parser(
        "broker",
        help="the broker's TLS certificates and logins (docs/security.md)",
        description=f"The MQTT broker's private CA and logins. {env_help}",
    )
    broker_sub = broker.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    init = broker_sub.add_parser(
        "init",
        help="make the broker's CA and certificate (once) and a new login for the platform",
        description="Make a private CA and the broker's server certificate in DIR (kept if "
        "there), a new login for the platform's host identity, and the broker's password file "
        "and ACL. Prints the MQTT_URL the platform uses, once. " + env_help,
    )
    init.add_argument("dir", type=Path, help="the broker directory (Mosquitto reads it)")
    init.add_argument("--url", default="mqtts://127.0.0.1:8883", help="the broker's TLS URL")
    init.add_argument(
        "--hostname", action="append", default=[], help="a name or address of the broker "
        "for its certificate (repeat; default: localhost and 127.0.0.1)",
    )  # fmt: skip
    init.add_argument("--user", default="plantwire-host", help="the platform's broker login")
    init.add_argument(
        "--url-file", type=Path, help="write the platform's MQTT_URL there (readable by its "
        "owner alone; PLANTWIRE_MQTT_URL_FILE reads it) instead of printing it",
    )  # fmt: skip
    init.add_argument("--keep", action="store_true", help="do nothing if DIR has its files already")
    init.set_defaults(func=action("broker init", _init))

    gateway = sub.add_parser(
        "gateway",
        help="issue or revoke a gateway's broker credential",
        description=f"Gateways' broker credentials. {env_help}",
    )
    gw_sub = gateway.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    provision = gw_sub.add_parser(
        "provision",
        help="issue a registered gateway's credential (once) and write its edge config",
        description="Issue the credential of the gateway GROUP/EDGE_NODE (registered: a site "
        "of enterprise GROUP with that edge_node), allow it its own topics in the broker's "
        "ACL and reload the broker. The password is written into CONFIG only (its mqtt_url); "
        "an existing CONFIG keeps its devices. " + env_help,
    )
    revoke = gw_sub.add_parser(
        "revoke",
        help="revoke a gateway's credential: the broker refuses it at its next connect",
        description="Revoke the credential of GROUP/EDGE_NODE, rewrite the broker's password "
        "file and ACL and reload the broker (SIGHUP). " + env_help,
    )
    listing = gw_sub.add_parser(
        "list",
        help="an enterprise's gateways and whether each holds a credential",
        description="The gateways of enterprise GROUP (one a site: its edge_node) and whether "
        "each holds a broker credential (issued), held one (revoked) or never did (none). "
        + env_help,
    )
    listing.add_argument("group", help="the enterprise code (Sparkplug group id)")
    listing.set_defaults(func=action("gateway list", _list))
    for p in (provision, revoke):
        p.add_argument("group", help="the enterprise code (Sparkplug group id)")
        p.add_argument("edge_node", help="the site's edge node id")
        p.add_argument("--broker-dir", type=Path, required=True, help="as for broker init")
    provision.add_argument("--config", type=Path, required=True, help="gateway config to write")
    provision.add_argument("--url", default="mqtts://127.0.0.1:8883", help="the broker's URL")
    provision.add_argument(
        "--client-cert", action="store_true", help="also a client certificate, in "
        "BROKER_DIR/clients/GROUP/EDGE_NODE.crt and .key (its common name is the login)",
    )  # fmt: skip
    provision.add_argument(
        "--keep", action="store_true", help="do nothing if CONFIG exists already"
    )
    provision.add_argument(
        "--devices-from", type=Path, help="a new CONFIG starts as a copy of this gateway "
        "config (e.g. from 'plantwire sim gateway-config')",
    )  # fmt: skip
    provision.add_argument(
        "--primary-host", default="plantwire", help="the platform's Sparkplug host id"
    )
    provision.set_defaults(func=action("gateway provision", _provision))
    revoke.set_defaults(func=action("gateway revoke", _revoke))


async def _init(conn: Any, args: argparse.Namespace) -> str:
    from plantwire_platform.gateways.provisioning import BrokerDir, client_url, init_broker

    broker = BrokerDir(args.dir.resolve())
    if args.keep and broker.passwd.exists():
        return f"{broker.path} has its broker files already"
    hosts = tuple(args.hostname) or ("localhost", "127.0.0.1")
    password = await init_broker(conn, broker, args.user, hosts)
    url = client_url(args.url, args.user, password, broker.ca.cert)
    if args.url_file is not None:
        fd = os.open(args.url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(url + "\n")
        return f"the platform's broker login is in {args.url_file}"
    return f"MQTT_URL={url}\n(shown once: the platform's broker login)"


async def _provision(conn: Any, args: argparse.Namespace) -> str:
    from plantwire_platform.gateways.provisioning import (
        BrokerDir,
        client_url,
        provision_gateway,
        write_edge_config,
    )

    if args.keep and args.config.exists():
        return f"{args.config} exists already"
    broker = BrokerDir(args.broker_dir.resolve())
    user, password, cert = await provision_gateway(
        conn, broker, args.group, args.edge_node, client_cert=args.client_cert
    )
    url = client_url(args.url, user, password, broker.ca.cert, cert)
    if args.devices_from is not None and not args.config.exists():
        args.config.parent.mkdir(parents=True, exist_ok=True)
        args.config.write_text(args.devices_from.read_text(encoding="utf-8"), encoding="utf-8")
    write_edge_config(args.config, args.group, args.edge_node, url, args.primary_host)
    issued = f"issued the broker login {user}"
    if cert is not None:
        issued += f" and its client certificate {cert.cert} (key {cert.key.name})"
    return f"{issued}; written into {args.config}"


async def _list(conn: Any, args: argparse.Namespace) -> str:
    from plantwire_platform.gateways.provisioning import gateways_of

    rows = [
        f"{g['site']:<12} {g['edge_node']:<20} {g['credential']:<8} "
        + (
            f"since {g['revoked_at'] or g['issued_at']:%Y-%m-%d %H:%M:%S%z}"
            if g["issued_at"]
            else ""
        )
        for g in await gateways_of(conn, await id_of(conn, "enterprise", args.group) or 0)
    ]
    return "\n".join([f"{'site':<12} {'edge node':<20} credential", *rows]).rstrip()


async def _revoke(conn: Any, args: argparse.Namespace) -> str:
    from plantwire_platform.gateways.provisioning import BrokerDir, revoke_gateway

    await revoke_gateway(conn, BrokerDir(args.broker_dir.resolve()), args.group, args.edge_node)
    return f"revoked {args.group}/{args.edge_node}: the broker refuses it from its next connect"
