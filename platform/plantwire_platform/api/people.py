"""``/api/v1`` routes of people's own accounts and of who is registered: every person changes
their password (the one handed out is shown once), enterprise admins list their enterprise's
people, platform admins everyone. Registering a person is :mod:`.editing`'s
``POST /api/v1/people``. Every decision is audited; a change commits with its entry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from plantwire_platform.accounts import access
from plantwire_platform.accounts.people import (
    Person,
    PersonError,
    authenticate,
    people_of,
    set_password,
)
from plantwire_platform.api.editing import json_body, parsed
from plantwire_platform.api.routes import Conn
from plantwire_platform.errors import ApiError
from plantwire_platform.translation import Text


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024, description="at least 12 characters")


def routes(router: APIRouter) -> None:
    """Add the people routes to the ``/api/v1`` router."""
    tags: list[Any] = ["accounts"]

    @router.get("/api/v1/people", tags=tags, name="person.list", response_model=list[Person])
    async def listing(request: Request, conn: Conn) -> list[Person]:
        """The people of the caller's enterprise (its admins), or everyone (platform admins);
        never their passwords."""
        enterprise = access.require_people_listing(request)
        return await people_of(conn, enterprise)

    @router.post(
        "/api/v1/people/me/password",
        tags=tags,
        name="person.password",
        status_code=204,
        response_class=Response,
        responses={
            403: {"description": "wrong_password: current_password is not this account's"},
            422: {"description": "the new password is too short or too long"},
        },
        openapi_extra=json_body(PasswordChange),
    )
    async def password(request: Request, conn: Conn) -> Response:
        """Change the caller's own password, giving the current one; every token the person
        holds is revoked (sign in again with the new password)."""
        username = access.require_own_account(request)
        body = parsed(PasswordChange, await request.body())
        if await authenticate(conn, username, body.current_password) is None:
            raise ApiError(403, "wrong_password", Text("password.wrong"))
        try:
            await set_password(conn, username, body.new_password)
        except PersonError as exc:
            raise ApiError(
                422,
                "invalid_request",
                Text("field.problem", field="new_password", problem=exc.text),
            ) from None
        await access.commit(request, conn, 204)
        return Response(status_code=204)
