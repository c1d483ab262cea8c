"""Opening an OPC UA session for a device: security policy and mode, the gateway's
certificate, user/password, and the server's operation limits; plus creating the gateway's
certificate (``plantwire edge cert``).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from plantwire_edge.devices import OpcUaDevice
from plantwire_edge.opcua_publish import install

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS = 120_000  # the server keeps our session (and subscription) this long
DEFAULT_BATCH = 1_000  # items per call when the server states no limit

# Status codes that mean "a person must fix credentials or trust", not "try again soon".
_AUTH_CODES = {
    StatusCodes.BadUserAccessDenied: "the server rejected the user name or password",
    StatusCodes.BadIdentityTokenRejected: "the server does not accept this kind of login",
    StatusCodes.BadIdentityTokenInvalid: "the server rejected the user name or password",
    StatusCodes.BadCertificateUntrusted: "the server does not trust the gateway certificate",
    StatusCodes.BadCertificateInvalid: "the server finds the gateway certificate invalid",
    StatusCodes.BadSecurityChecksFailed: "the server's security checks failed "
    "(is the gateway certificate trusted?)",
    StatusCodes.BadSecurityPolicyRejected: "the server refuses the security policy",
    StatusCodes.BadCertificateUriInvalid: "the certificate's application URI does not match",
}


class AuthError(RuntimeError):
    """Credentials, certificates or security settings were refused; needs a person."""


@dataclass(frozen=True, slots=True)
class OperationLimits:
    """How many items the server takes per call (0 in the server means 'no limit')."""

    monitored_items_per_call: int = DEFAULT_BATCH
    nodes_per_read: int = DEFAULT_BATCH

    @classmethod
    async def read(cls, client: Client) -> OperationLimits:
        ids = (
            ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
        )
        values: list[int] = []
        for nodeid in ids:
            try:
                value = await client.get_node(ua.NodeId(ua.Int32(nodeid))).read_value()
            except Exception:  # noqa: BLE001 - optional nodes: a server may not have them
                value = 0
            values.append(int(value) if isinstance(value, int) and value > 0 else DEFAULT_BATCH)
        return cls(*values)


def _policy(name: str) -> type[Any]:
    policy: type[Any] = getattr(security_policies, f"SecurityPolicy{name}")
    return policy


async def connect(device: OpcUaDevice, client_uri: str, state: Path | None = None) -> Client:
    """A connected, activated client for ``device``; raises :class:`AuthError` on refusals.

    With ``state``, the session is kept there and an earlier one still alive on the server
    is resumed (ActivateSession on a new channel) instead of creating a new one."""
    client = Client(device.endpoint, timeout=device.timeout_s, watchdog_intervall=device.watchdog_s)
    install(client)  # data changes decoded straight into readings
    client.session_state_path = state
    client.session_timeout = SESSION_TIMEOUT_MS
    # liveness is the adapter's business (keep-alives negotiated per subscription, with
    # margins); asyncua's own stale check would recreate a slow server's subscription after
    # 1.5 keep-alive periods and lose its queued values
    client._stale_check_margin = 1e9
    client.application_uri = client_uri
    client.name = f"plantwire edge ({client_uri})"
    try:
        if device.security_policy != "None":
            assert device.certificate is not None and device.private_key is not None
            await client.set_security(
                _policy(device.security_policy),
                certificate=device.certificate,
                private_key=device.private_key,
                server_certificate=device.server_certificate,
                mode=getattr(ua.MessageSecurityMode, device.security_mode),
            )
        if device.username is not None:
            client.set_user(device.username)
            client.set_password(device.password or "")
        await client.connect(auto_reconnect=False)
    except ua.uaerrors.UaStatusCodeError as exc:
        reason = _AUTH_CODES.get(exc.code)
        if reason is not None:
            name = ua.StatusCode(ua.UInt32(exc.code)).name
            raise AuthError(f"{device.endpoint}: {reason} ({name})") from exc
        raise
    except ua.uaerrors.UaError as exc:
        if "endpoint" in str(exc).lower():
            raise AuthError(
                f"{device.endpoint}: no endpoint with security {device.security_policy} "
                f"{device.security_mode}: {exc}"
            ) from exc
        raise
    return client


async def create_certificate(
    certificate: Path, private_key: Path, application_uri: str, host_name: str | None = None
) -> bool:
    """Create the gateway's self-signed application certificate (DER) and key (PEM) if
    missing or no longer valid; returns whether anything was written."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    before = {p: p.stat().st_mtime_ns if p.is_file() else None for p in (certificate, private_key)}
    certificate.parent.mkdir(parents=True, exist_ok=True)
    private_key.parent.mkdir(parents=True, exist_ok=True)
    await setup_self_signed_certificate(
        private_key,
        certificate,
        application_uri,
        host_name or socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"organizationName": "plantwire edge"},
    )
    after = {p: p.stat().st_mtime_ns if p.is_file() else None for p in (certificate, private_key)}
    return before != after
