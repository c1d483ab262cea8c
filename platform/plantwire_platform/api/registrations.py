"""``/api/v1`` routes by which parks and regions register their enterprises, with the
enterprises' consent: the group's authority asks, the enterprise's admins accept or decline;
membership is effective-dated, so a group's roll-up counts an enterprise from its consent on
(:mod:`plantwire_platform.registry.registrations`). Every change commits with its audit
entry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from plantwire_platform.accounts import access
from plantwire_platform.api.editing import json_body, parsed
from plantwire_platform.api.routes import Conn
from plantwire_platform.errors import ApiError
from plantwire_platform.registry import registrations
from plantwire_platform.registry.chains import MembershipRefused
from plantwire_platform.registry.registrations import (
    PARKS,
    REGIONS,
    Kind,
    R,
    RegionRegistration,
    Registration,
)
from plantwire_platform.translation import Text

Id = Annotated[int, Path(ge=1, le=2**62)]
Region = Annotated[str, Path(min_length=1, max_length=100)]


class RegistrationIn(BaseModel):
    enterprise_id: int = Field(ge=1, le=2**62)


def _conflict(noun: str) -> dict[int | str, dict[str, Any]]:
    return {409: {"description": f"not possible now (in the {noun} or asked already, not open)"}}


async def _ask(request: Request, conn: Conn, kind: Kind[R], group: int | str) -> R:
    body = parsed(RegistrationIn, await request.body())
    request.state.note.supplier_id = body.enterprise_id
    try:
        made = await registrations.ask(
            conn, kind, group, body.enterprise_id, access.caller(request).client_id
        )
    except MembershipRefused as exc:
        raise ApiError(409, "conflict", Text(f"membership.{exc.key}", **exc.values)) from None
    await access.commit(request, conn, 201)
    return made


def routes(router: APIRouter) -> None:
    """Add the park and region registration routes to the ``/api/v1`` router."""

    async def park(request: Request, conn: Conn, park_id: Id) -> Registration:
        """Ask an enterprise to join the park (its park authority, or platform admins); it is
        in the park once its admins consent."""
        exists = await registrations.park_exists(conn, park_id)
        await access.require_park(request, conn, park_id if exists else None)
        return await _ask(request, conn, PARKS, park_id)

    async def region(request: Request, conn: Conn, region: Region) -> RegionRegistration:
        """Ask an enterprise to join the region (its region authority, or platform admins); it
        is in the region once its admins consent."""
        await access.require_region(request, conn, region)
        return await _ask(request, conn, REGIONS, region)

    for path, ask, kind in (
        ("/api/v1/parks/{park_id}/registrations", park, PARKS),
        ("/api/v1/regions/{region}/registrations", region, REGIONS),
    ):
        router.post(
            path,
            tags=[f"{kind.noun}s"],
            name=f"{kind.noun}.register",
            status_code=201,
            response_model=kind.model,
            responses=_conflict(kind.noun),
            openapi_extra=json_body(RegistrationIn),
        )(ask)
    _answers(router, PARKS, "parks", "registration", "/api/v1/registrations", list[Registration])
    _answers(
        router, REGIONS, "regions", "region_registration", "/api/v1/region-registrations",
        list[RegionRegistration],
    )  # fmt: skip


def _answers(
    router: APIRouter, kind: Kind[Any], plural: Literal["parks", "regions"], name: str,
    collection: str, many: Any,
) -> None:  # fmt: skip
    """The listing of ``kind``'s registrations and the enterprise's answers to them."""
    noun = kind.noun

    async def listing(request: Request, conn: Conn) -> list[Any]:
        ent, group = await access.require_registrations(request, conn, plural)
        return await registrations.registrations_of(conn, kind, ent, group)

    listing.__doc__ = (
        f"Registrations into {plural} of the caller's enterprise, or of its {noun} ({noun} "
        "authorities; platform admins: all)."
    )
    router.get(collection, tags=[plural], name=f"{name}.list", response_model=many)(listing)

    for action in ("accept", "decline"):
        _answer(router, kind, plural, name, collection, action)


def _answer(
    router: APIRouter, kind: Kind[Any], plural: str, name: str, collection: str, action: str
) -> None:
    noun = kind.noun

    async def answer(request: Request, conn: Conn, registration_id: Id) -> Any:
        found = await registrations.get_registration(conn, kind, registration_id)
        access.require_member(request, found.enterprise_id if found else None)
        by = access.caller(request).client_id
        try:
            done = await registrations.answer(conn, kind, registration_id, action == "accept", by)
        except MembershipRefused as exc:
            raise ApiError(409, "conflict", Text(f"membership.{exc.key}", **exc.values)) from None
        await access.commit(request, conn, 200)
        return done

    answer.__doc__ = (
        f"{action.capitalize()} a {noun}'s registration (the enterprise's admins: its consent)"
        + (f"; the enterprise is in the {noun} from now on." if action == "accept" else ".")
    )
    router.post(
        f"{collection}/{{registration_id}}/{action}",
        tags=[plural],
        name=f"{name}.{action}",
        response_model=kind.model,
        responses=_conflict(noun),
    )(answer)
