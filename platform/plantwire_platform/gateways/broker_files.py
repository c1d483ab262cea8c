"""Mosquitto's password file and ACL, made from the broker users and the registry.

Passwords are hashed as Mosquitto 2 reads them (:func:`plantwire_bus.mosquitto.password_hash`).
The ACL lets a gateway publish only its own Sparkplug messages
(``spBv1.0/{group}/{NBIRTH|NDATA|NDEATH}/{edge_node}`` and the device messages under it) and
read only its own commands, every host's STATE and its commit confirmations; only the
platform's host identity publishes STATE and commands. A client without a line in the ACL may
do nothing at all. The same rules in EMQX: one ``authorization`` source with these topics per
username (``docs/security.md``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from plantwire_bus.extension import committed_topic
from plantwire_bus.topics import NAMESPACE

NODE_MESSAGES = ("NBIRTH", "NDATA", "NDEATH")
DEVICE_MESSAGES = ("DBIRTH", "DDATA", "DDEATH")


def gateway_username(group_id: str, edge_node_id: str) -> str:
    """The broker username of a gateway (registry codes never contain '/')."""
    return f"{group_id}/{edge_node_id}"


def new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class BrokerUser:
    username: str
    password_hash: str
    group_id: str = ""  # a gateway's identity; '' for the host
    edge_node_id: str = ""

    @property
    def is_host(self) -> bool:
        return not self.edge_node_id


def password_file(users: Iterable[BrokerUser]) -> str:
    return "".join(f"{u.username}:{u.password_hash}\n" for u in users)


def acl_file(users: Iterable[BrokerUser]) -> str:
    """The ACL of every user; a user without a block may neither publish nor subscribe."""
    blocks = ["# made by plantwire from the broker users and the registry: do not edit\n"]
    for u in sorted(users, key=lambda u: (not u.is_host, u.username)):
        lines = [f"user {u.username}"]
        if u.is_host:
            lines += [f"topic readwrite {NAMESPACE}/#", "topic readwrite plantwire/v1/#"]
        else:
            g, n = u.group_id, u.edge_node_id
            lines += [f"topic write {NAMESPACE}/{g}/{kind}/{n}" for kind in NODE_MESSAGES]
            lines += [f"topic write {NAMESPACE}/{g}/{kind}/{n}/+" for kind in DEVICE_MESSAGES]
            lines += [
                f"topic read {NAMESPACE}/{g}/NCMD/{n}",
                f"topic read {NAMESPACE}/{g}/DCMD/{n}/+",
                f"topic read {NAMESPACE}/STATE/+",
                f"topic read {committed_topic(g, n)}",
            ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
