"""``/api/v1`` routes by which regions register their enterprises, with the enterprises'
consent, as parks do (:mod:`.parks`): a region's authority asks, the enterprise's admins accept
or decline; membership is effective-dated, so a region's roll-up counts an enterprise from its
consent on (:mod:`plantwire_platform.registry.regions`). Every change commits with its audit
entry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from plantwire_platform.accounts import access
from plantwire_platform.api.editing import json_body, parsed
from plantwire_platform.api.parks import RegistrationIn
from plantwire_platform.api.routes import Conn
from plantwire_platform.errors import ApiError
from plantwire_platform.registry import regions
from plantwire_platform.registry.chains import MembershipRefused
from plantwire_platform.registry.regions import RegionRegistration

Id = Annotated[int, Path(ge=1, le=2**62)]
Region = Annotated[str, Path(min_length=1, max_length=100)]


def routes(router: APIRouter) -> None:
    """Add the region registration routes to the ``/api/v1`` router."""
    tags: list[Any] = ["regions"]
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "not possible now (in the region or asked already, not open)"}
    }

    @router.post(
        "/api/v1/regions/{region}/registrations",
        tags=tags,
        name="region.register",
        status_code=201,
        response_model=RegionRegistration,
        responses=conflict,
        openapi_extra=json_body(RegistrationIn),
    )
    async def register(request: Request, conn: Conn, region: Region) -> RegionRegistration:
        """Ask an enterprise to join the region (its region authority, or platform admins); it
        is in the region once its admins consent."""
        await access.require_region(request, conn, region)
        body = parsed(RegistrationIn, await request.body())
        request.state.note.supplier_id = body.enterprise_id
        try:
            made = await regions.ask(
                conn, region, body.enterprise_id, access.caller(request).client_id
            )
        except MembershipRefused as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        await access.commit(request, conn, 201)
        return made

    @router.get(
        "/api/v1/region-registrations",
        tags=tags,
        name="region_registration.list",
        response_model=list[RegionRegistration],
    )
    async def listing(request: Request, conn: Conn) -> list[RegionRegistration]:
        """Region registrations of the caller's enterprise, or of its region (region
        authorities; platform admins: all)."""
        ent, region = await access.require_region_registrations(request, conn)
        return await regions.registrations_of(conn, ent, region)

    def answer_route(action: str) -> None:
        async def answer(request: Request, conn: Conn, registration_id: Id) -> RegionRegistration:
            found = await regions.get_registration(conn, registration_id)
            access.require_member(request, found.enterprise_id if found else None)
            try:
                done = await regions.answer(
                    conn, registration_id, action == "accept", access.caller(request).client_id
                )
            except MembershipRefused as exc:
                raise ApiError(409, "conflict", str(exc)) from None
            await access.commit(request, conn, 200)
            return done

        answer.__doc__ = (
            f"{action.capitalize()} a region's registration (the enterprise's admins: its "
            "consent)" + ("; the enterprise is in the region from now on." if action == "accept"
                          else ".")
        )  # fmt: skip
        router.post(
            f"/api/v1/region-registrations/{{registration_id}}/{action}",
            tags=tags,
            name=f"region_registration.{action}",
            response_model=RegionRegistration,
            responses=conflict,
        )(answer)

    answer_route("accept")
    answer_route("decline")
