"""Issuing and revoking broker credentials, and the broker files made from them.

A broker directory (``plantwire platform broker init DIR``) holds the private CA (``ca.crt``,
``ca.key``), the broker's server certificate (``server.crt``, ``server.key``), the password
file and ACL made from the database (``passwd``, ``acl``) and, while Mosquitto runs with the
project's config, its pid file (``mosquitto.pid``). Each change of the broker users rewrites
``passwd`` and ``acl`` and sends Mosquitto SIGHUP, which rereads both: a revoked gateway is
refused at its next connect, and nothing else restarts. A gateway's client certificate, where
one is issued, is ``clients/{group}/{edge_node}.crt`` and ``.key``: its broker login as a path,
one file pair per gateway (codes never hold ``/`` nor are ``.`` or ``..``).

These functions are what the CLI calls and what the API will call.
"""

from __future__ import annotations

import os
import signal
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import psycopg
import tomli_w

from plantwire_bus.mosquitto import password_hash
from plantwire_platform.gateways import authority
from plantwire_platform.gateways.broker_files import (
    BrokerUser,
    acl_file,
    gateway_username,
    new_password,
    password_file,
)
from plantwire_platform.translation import Text


class ProvisioningError(RuntimeError):
    """A credential cannot be issued or revoked: ``text`` says why in the API's catalogue
    (worded in the request's language); ``str()`` is its English, what the command prints."""

    def __init__(self, text: Text) -> None:
        super().__init__(str(text))
        self.text = text


class GatewayUnknown(ProvisioningError):
    """No site of the enterprise has this edge node."""


class CredentialHeld(ProvisioningError):
    """The gateway holds a credential already (revoke it first)."""


class NoCredential(ProvisioningError):
    """The gateway holds no credential to revoke."""


@dataclass(frozen=True, slots=True)
class BrokerDir:
    path: Path

    @property
    def ca(self) -> authority.Issued:
        return authority.Issued(self.path / "ca.crt", self.path / "ca.key")

    @property
    def passwd(self) -> Path:
        return self.path / "passwd"

    @property
    def acl(self) -> Path:
        return self.path / "acl"

    @property
    def pid_file(self) -> Path:
        return self.path / "mosquitto.pid"

    def client_cert(self, username: str) -> authority.Issued:
        """Where the client certificate of the broker login ``username`` (``group/edge_node``)
        is: ``clients/group/edge_node.crt`` and ``.key``, so the path names the login alone.
        (Before, ``clients/group.edge_node.crt``: group ``a.b`` node ``c`` and group ``a`` node
        ``b.c`` shared one file.)"""
        base = self.path / "clients" / username
        return authority.Issued(Path(f"{base}.crt"), Path(f"{base}.key"))


def client_url(
    broker_url: str, username: str, password: str, ca_file: Path | None, cert: Any = None
) -> str:
    """``broker_url`` (``mqtts://host:port``) with a login and, for TLS, the CA to trust."""
    parts = urlsplit(broker_url)
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    query: dict[str, str] = {}
    if parts.scheme == "mqtts" and ca_file is not None:
        query["cafile"] = str(ca_file)
    if cert is not None:
        query.update(certfile=str(cert.cert), keyfile=str(cert.key))
    return f"{parts.scheme}://{netloc}" + (f"?{urlencode(query)}" if query else "")


async def init_broker(
    conn: psycopg.AsyncConnection[Any],
    broker: BrokerDir,
    host_username: str,
    hosts: tuple[str, ...],
) -> str:
    """Make the CA and server certificate (once) and a new host credential; returns the host's
    password (shown once) and writes the broker files."""
    if not broker.ca.cert.exists():
        authority.make_ca(broker.path)
        authority.issue(broker.ca, broker.path, "server", hosts[0], hosts)
    password = new_password()
    await conn.execute(
        "INSERT INTO broker_user (username, password_hash) VALUES (%s, %s)"
        " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,"
        " issued_at = now(), revoked_at = NULL",
        (host_username, password_hash(password)),
    )
    await write_broker_files(conn, broker)
    return password


async def provision_gateway(
    conn: psycopg.AsyncConnection[Any], broker: BrokerDir, group_id: str, edge_node_id: str,
    *, client_cert: bool = False,
) -> tuple[str, str, authority.Issued | None]:  # fmt: skip
    """Issue a registered gateway's credential, once: (username, password, client
    certificate or None). Raises :class:`ProvisioningError` for an unregistered gateway or one
    that holds a credential already (revoke it first)."""
    cur = await conn.execute(
        "SELECT 1 FROM site s JOIN enterprise x ON x.id = s.enterprise_id"
        " WHERE x.code = %s AND s.edge_node_id = %s",
        (group_id, edge_node_id),
    )
    if await cur.fetchone() is None:
        raise GatewayUnknown(Text("gateway.unregistered", group=group_id, node=edge_node_id))
    username = gateway_username(group_id, edge_node_id)
    password = new_password()
    cur = await conn.execute(
        "INSERT INTO broker_user (username, group_id, edge_node_id, password_hash)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (username) DO UPDATE"
        " SET password_hash = excluded.password_hash, issued_at = now(), revoked_at = NULL"
        " WHERE broker_user.revoked_at IS NOT NULL RETURNING 1",
        (username, group_id, edge_node_id, password_hash(password)),
    )
    if await cur.fetchone() is None:
        raise CredentialHeld(Text("gateway.held", username=username))
    cert = None
    if client_cert:
        where = broker.client_cert(username)
        cert = authority.issue(broker.ca, where.cert.parent, where.cert.stem, username)
    await write_broker_files(conn, broker)
    return username, password, cert


async def revoke_gateway(
    conn: psycopg.AsyncConnection[Any], broker: BrokerDir, group_id: str, edge_node_id: str
) -> None:
    """Revoke a gateway's credential: it is refused at its next connect."""
    cur = await conn.execute(
        "UPDATE broker_user SET revoked_at = now() WHERE username = %s AND revoked_at IS NULL"
        " RETURNING 1",
        (gateway_username(group_id, edge_node_id),),
    )
    if await cur.fetchone() is None:
        raise NoCredential(
            Text("gateway.no_credential", username=gateway_username(group_id, edge_node_id))
        )
    await write_broker_files(conn, broker)


async def gateways_of(
    conn: psycopg.AsyncConnection[Any], enterprise_id: int, edge_node_id: str | None = None
) -> list[dict[str, Any]]:
    """The enterprise's gateways (one a site), or the one of ``edge_node_id``, each with its
    broker username and whether it holds a credential (``issued``), held one (``revoked``)
    or never held one (``none``)."""
    cur = await conn.execute(
        "SELECT s.code, s.edge_node_id, x.code || '/' || s.edge_node_id, u.issued_at,"
        " u.revoked_at FROM site s JOIN enterprise x ON x.id = s.enterprise_id"
        " LEFT JOIN broker_user u ON u.group_id = x.code AND u.edge_node_id = s.edge_node_id"
        " WHERE x.id = %s AND (%s::text IS NULL OR s.edge_node_id = %s) ORDER BY s.code",
        (enterprise_id, edge_node_id, edge_node_id),
    )
    return [
        {
            "site": site,
            "edge_node": node,
            "username": username,
            "credential": "none" if issued is None else "revoked" if revoked else "issued",
            "issued_at": issued,
            "revoked_at": revoked,
        }
        for site, node, username, issued, revoked in await cur.fetchall()
    ]


async def broker_users(conn: psycopg.AsyncConnection[Any]) -> list[BrokerUser]:
    """Users who may connect: the host, and gateways the registry still names."""
    cur = await conn.execute(
        "SELECT u.username, u.password_hash, u.group_id, u.edge_node_id FROM broker_user u"
        " WHERE u.revoked_at IS NULL AND (u.edge_node_id = '' OR EXISTS (SELECT 1 FROM site s"
        "  JOIN enterprise x ON x.id = s.enterprise_id"
        "  WHERE x.code = u.group_id AND s.edge_node_id = u.edge_node_id))"
        " ORDER BY u.username"
    )
    return [BrokerUser(*row) for row in await cur.fetchall()]


async def write_broker_files(conn: psycopg.AsyncConnection[Any], broker: BrokerDir) -> bool:
    """Rewrite ``passwd`` and ``acl``, then have a running Mosquitto reread them; True if one
    was told."""
    users = await broker_users(conn)
    _replace(broker.passwd, password_file(users))
    _replace(broker.acl, acl_file(users))
    return reload_broker(broker.pid_file)


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (the broker may read it any time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


def reload_broker(pid_file: Path) -> bool:
    """SIGHUP to the Mosquitto whose pid ``pid_file`` holds; False if none runs."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


def edge_config(
    data: dict[str, Any], group_id: str, edge_node_id: str, mqtt_url: str, primary_host_id: str,
    equipment: Sequence[str] = (),
) -> str:  # fmt: skip
    """The gateway config ``data`` (its devices, say) given its identity and broker login, as
    TOML; without devices, it says how to add them, one for each code of ``equipment``."""
    data = {
        **data,
        "group_id": group_id,
        "edge_node_id": edge_node_id,
        "mqtt_url": mqtt_url,
        "primary_host_id": primary_host_id,
    }
    text = tomli_w.dumps(data)
    if not data.get("devices"):
        first = equipment[0] if equipment else "CNC-01"
        codes = f" (this site's: {', '.join(equipment)})" if equipment else ""
        text += (
            "\n# Add the machines this gateway reads, for example:\n# [[devices]]\n"
            f'# kind = "opcua"\n# device_id = "{first}"   # its equipment code in the registry'
            f"{codes}\n"
        )
    return text


def write_edge_config(
    path: Path, group_id: str, edge_node_id: str, mqtt_url: str, primary_host_id: str
) -> None:
    """Give the gateway config at ``path`` its identity and broker login (its devices, if the
    file exists, are kept); a new file gets these settings and the devices to fill in."""
    data: dict[str, Any] = {}
    if path.exists():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    _replace(path, edge_config(data, group_id, edge_node_id, mqtt_url, primary_host_id))
