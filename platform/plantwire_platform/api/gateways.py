"""``/api/v1`` routes by which an enterprise's admins run their gateways' broker logins, as
``plantwire platform gateway list|provision|revoke`` does on the platform's host: a gateway is
a site's edge node (``edge_node`` in the registry); provisioning issues its login once and
answers a ready gateway config (identity, broker URL with the login, the devices given) with
the broker's CA certificate; revoking it locks the gateway out at its next connect. The broker's
password file and ACL are rewritten and Mosquitto is reloaded
(:mod:`plantwire_platform.gateways.provisioning`). Every change commits with its audit entry.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict, Field

from plantwire_platform.accounts import access
from plantwire_platform.api.editing import json_body, parsed
from plantwire_platform.api.routes import Conn
from plantwire_platform.errors import ApiError
from plantwire_platform.gateways import provisioning
from plantwire_platform.registry.document import CODE
from plantwire_platform.settings import PlatformSettings
from plantwire_platform.translation import Text

EdgeNode = Annotated[str, PathParam(pattern=CODE, description="the site's edge_node")]


class GatewayIn(BaseModel):
    """What the gateway config is to hold beside its identity and login (all optional)."""

    model_config = ConfigDict(extra="forbid")
    ca_file: str = Field(
        default="ca.crt",
        min_length=1,
        max_length=1024,
        description="where the gateway keeps the broker's CA certificate (answered as "
        "ca_certificate); written into the config's mqtt_url; a relative path is read beside "
        "the config",
    )
    devices: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=5000,
        description="the machines the gateway reads, as in the gateway config (docs/edge.md); "
        "each device_id is an equipment code of the gateway's site",
    )


class Gateway(BaseModel):
    site: str
    edge_node: str
    username: str = Field(description="its broker login")
    credential: Literal["none", "issued", "revoked"]
    issued_at: datetime | None = None
    revoked_at: datetime | None = None


class GatewayIssued(BaseModel):
    group_id: str
    edge_node_id: str
    username: str
    password: str = Field(description="shown once; stored hashed")
    mqtt_url: str = Field(description="the broker URL with the login, as in the config")
    ca_certificate: str = Field(description="PEM: the broker's CA, to keep at ca_file")
    config: str = Field(description="the gateway config (TOML), ready for 'plantwire edge'")


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such enterprise, or no site of it has this edge node"},
    409: {"description": "the gateway holds a login already (provision) or none (revoke)"},
    503: {"description": "the API does not issue logins (PLANTWIRE_BROKER_DIR unset)"},
}


async def _gateway(conn: AsyncConnection[Any], enterprise_id: int, node: str) -> dict[str, Any]:
    found = await provisioning.gateways_of(conn, enterprise_id, node)
    if not found:
        raise ApiError(
            404, "not_found", Text("gateway.missing", enterprise=enterprise_id, node=node)
        )
    return found[0]


def _broker(request: Request) -> tuple[provisioning.BrokerDir, PlatformSettings]:
    settings: PlatformSettings = request.app.state.settings
    if settings.broker_dir is None:
        raise ApiError(
            503,
            "not_configured",
            Text("gateway.not_configured"),
        )
    return provisioning.BrokerDir(Path(settings.broker_dir)), settings


async def _site_equipment(conn: AsyncConnection[Any], enterprise_id: int, site: str) -> list[str]:
    cur = await conn.execute(
        "SELECT e.code FROM equipment e JOIN site s ON s.id = e.site_id"
        " WHERE s.enterprise_id = %s AND s.code = %s ORDER BY e.code",
        (enterprise_id, site),
    )
    return [str(r[0]) for r in await cur.fetchall()]


def _check_devices(devices: list[dict[str, Any]], equipment: list[str], site: str) -> None:
    """Each device names an equipment code of the site (else its data would be quarantined)."""
    for n, device in enumerate(devices):
        code = device.get("device_id")
        if not isinstance(code, str) or code not in equipment:
            raise ApiError(
                422,
                "invalid_request",
                Text("gateway.device", n=n, code=code, site=site),
            )


def _null(value: object, place: str) -> str | None:
    """Where the first null of ``value`` is (TOML has none), if it has one."""
    if value is None:
        return place
    items: list[tuple[str, object]] = []
    if isinstance(value, dict):
        items = [(f"{place}.{key}", v) for key, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{place}[{n}]", v) for n, v in enumerate(value)]
    for where, v in items:
        found = _null(v, where)
        if found is not None:
            return found
    return None


def _not_toml(devices: list[dict[str, Any]]) -> Text:
    """Why a device list cannot be written into a gateway config (TOML)."""
    place = _null(devices, "devices")
    if place is None:
        return Text("gateway.devices_toml")
    return Text("gateway.devices_null", place=place)


def routes(router: APIRouter) -> None:
    """Add the gateway routes to the ``/api/v1`` router."""
    tags: list[Any] = ["gateways"]
    base = "/api/v1/enterprises/{enterprise_id}/gateways"

    @router.get(base, tags=tags, name="enterprise.gateway.list", response_model=list[Gateway])
    async def listing(request: Request, conn: Conn, enterprise_id: int) -> list[dict[str, Any]]:
        """The enterprise's gateways (one a site) and whether each holds a broker login (its
        own people)."""
        await access.require_enterprise(request, conn, enterprise_id, "detail")
        return await provisioning.gateways_of(conn, enterprise_id)

    @router.post(
        base + "/{edge_node}/credential",
        tags=tags,
        name="enterprise.gateway.provision",
        status_code=201,
        response_model=GatewayIssued,
        responses=_ERRORS,
        openapi_extra={"requestBody": {**json_body(GatewayIn)["requestBody"], "required": False}},
    )
    async def provision(
        request: Request, conn: Conn, enterprise_id: int, edge_node: EdgeNode
    ) -> GatewayIssued:
        """Issue the gateway's broker login (once: revoke it to issue another) and answer its
        config, ready to run, with the broker's CA certificate; the broker admits it from now
        on, to its own topics only (its admins)."""
        await access.require_enterprise(request, conn, enterprise_id, "manage")
        gateway = await _gateway(conn, enterprise_id, edge_node)
        raw = await request.body()
        body = parsed(GatewayIn, raw) if raw.strip() else GatewayIn()
        equipment = await _site_equipment(conn, enterprise_id, gateway["site"])
        _check_devices(body.devices, equipment, gateway["site"])
        settings: PlatformSettings = request.app.state.settings
        group = gateway["username"].split("/")[0]
        data = {"devices": body.devices} if body.devices else {}
        try:  # the config can be written (TOML holds no null) before a login is issued for it
            provisioning.edge_config(data, group, edge_node, "", settings.host_id)
        except (TypeError, ValueError):
            raise ApiError(422, "invalid_request", _not_toml(body.devices)) from None
        broker, _ = _broker(request)
        try:
            user, password, _ = await provisioning.provision_gateway(conn, broker, group, edge_node)
        except provisioning.CredentialHeld as exc:
            raise ApiError(409, "conflict", exc.text) from None
        await access.commit(request, conn, 201)
        ca = broker.ca.cert
        url = provisioning.client_url(settings.gateway_mqtt_url, user, password, Path(body.ca_file))
        config = provisioning.edge_config(data, group, edge_node, url, settings.host_id, equipment)
        return GatewayIssued(
            group_id=group,
            edge_node_id=edge_node,
            username=user,
            password=password,
            mqtt_url=url,
            ca_certificate=ca.read_text(encoding="ascii"),
            config=config,
        )

    @router.post(
        base + "/{edge_node}/revoke",
        tags=tags,
        name="enterprise.gateway.revoke",
        response_model=Gateway,
        responses=_ERRORS,
    )
    async def revoke(
        request: Request, conn: Conn, enterprise_id: int, edge_node: EdgeNode
    ) -> dict[str, Any]:
        """Revoke the gateway's broker login: the broker refuses it from its next connect (its
        admins)."""
        await access.require_enterprise(request, conn, enterprise_id, "manage")
        gateway = await _gateway(conn, enterprise_id, edge_node)
        broker, _ = _broker(request)
        group = gateway["username"].split("/")[0]
        try:
            await provisioning.revoke_gateway(conn, broker, group, edge_node)
        except provisioning.NoCredential as exc:
            raise ApiError(409, "conflict", exc.text) from None
        await access.commit(request, conn, 200)
        return await _gateway(conn, enterprise_id, edge_node)
