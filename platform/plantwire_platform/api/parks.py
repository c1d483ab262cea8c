"""``/api/v1`` routes by which parks register their enterprises, with the enterprises'
consent: a park's authority asks, the enterprise's admins accept or decline; membership is
effective-dated, so a park's roll-up counts an enterprise from its consent on
(:mod:`plantwire_platform.registry.parks`). Every change commits with its audit entry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from plantwire_platform.accounts import access
from plantwire_platform.api.editing import json_body, parsed
from plantwire_platform.api.routes import Conn
from plantwire_platform.errors import ApiError
from plantwire_platform.registry import parks
from plantwire_platform.registry.chains import MembershipRefused
from plantwire_platform.registry.parks import Registration

Id = Annotated[int, Path(ge=1, le=2**62)]


class RegistrationIn(BaseModel):
    enterprise_id: int = Field(ge=1, le=2**62)


def routes(router: APIRouter) -> None:
    """Add the park registration routes to the ``/api/v1`` router."""
    tags: list[Any] = ["parks"]
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "not possible now (in the park or asked already, not open)"}
    }

    @router.post(
        "/api/v1/parks/{park_id}/registrations",
        tags=tags,
        name="park.register",
        status_code=201,
        response_model=Registration,
        responses=conflict,
        openapi_extra=json_body(RegistrationIn),
    )
    async def register(request: Request, conn: Conn, park_id: Id) -> Registration:
        """Ask an enterprise to join the park (its park authority, or platform admins); it is
        in the park once its admins consent."""
        await access.require_park(
            request, conn, park_id if await parks.park_exists(conn, park_id) else None
        )
        body = parsed(RegistrationIn, await request.body())
        request.state.note.supplier_id = body.enterprise_id
        try:
            made = await parks.ask(
                conn, park_id, body.enterprise_id, access.caller(request).client_id
            )
        except MembershipRefused as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        await access.commit(request, conn, 201)
        return made

    @router.get(
        "/api/v1/registrations",
        tags=tags,
        name="registration.list",
        response_model=list[Registration],
    )
    async def listing(request: Request, conn: Conn) -> list[Registration]:
        """Park registrations of the caller's enterprise, or of its park (park authorities;
        platform admins: all)."""
        ent, park = await access.require_registrations(request, conn)
        return await parks.registrations_of(conn, ent, park)

    def answer_route(action: str) -> None:
        async def answer(request: Request, conn: Conn, registration_id: Id) -> Registration:
            found = await parks.get_registration(conn, registration_id)
            access.require_member(request, found.enterprise_id if found else None)
            try:
                done = await parks.answer(
                    conn, registration_id, action == "accept", access.caller(request).client_id
                )
            except MembershipRefused as exc:
                raise ApiError(409, "conflict", str(exc)) from None
            await access.commit(request, conn, 200)
            return done

        answer.__doc__ = (
            f"{action.capitalize()} a park's registration (the enterprise's admins: its consent)"
            + ("; the enterprise is in the park from now on." if action == "accept" else ".")
        )
        router.post(
            f"/api/v1/registrations/{{registration_id}}/{action}",
            tags=tags,
            name=f"registration.{action}",
            response_model=Registration,
            responses=conflict,
        )(answer)

    answer_route("accept")
    answer_route("decline")
