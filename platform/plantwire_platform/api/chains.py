"""``/api/v1`` routes by which chains are built: a leader creates its chain and invites
suppliers, a supplier accepts or declines and may leave; membership is effective-dated, so a
chain's roll-up counts a supplier from its acceptance on (:mod:`plantwire_platform.registry.
chains`). Every change commits together with its audit entry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from plantwire_platform.accounts import access
from plantwire_platform.api.editing import json_body, parsed
from plantwire_platform.api.routes import Conn
from plantwire_platform.errors import ApiError
from plantwire_platform.registry import chains
from plantwire_platform.registry.chains import Invitation, MembershipRefused
from plantwire_platform.registry.document import CODE
from plantwire_platform.translation import Text

Id = Annotated[int, Path(ge=1, le=2**62)]


class ChainIn(BaseModel):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    leader_id: int | None = Field(
        default=None, ge=1, le=2**62, description="platform admins only: the leading enterprise"
    )


class ChainCreated(BaseModel):
    id: int
    code: str
    leader_id: int


class InvitationIn(BaseModel):
    enterprise_id: int = Field(ge=1, le=2**62)
    tier: int = Field(default=1, ge=1, le=9)


def _refused(exc: MembershipRefused) -> ApiError:
    return ApiError(409, "conflict", Text(f"membership.{exc.key}", **exc.values))


def routes(router: APIRouter) -> None:
    """Add the chain-building routes to the ``/api/v1`` router."""
    tags: list[Any] = ["chains"]
    conflict: dict[int | str, dict[str, Any]] = {
        409: {"description": "not possible now (taken, invited already, not open)"}
    }

    @router.post(
        "/api/v1/chains",
        tags=tags,
        name="chain.create",
        status_code=201,
        response_model=ChainCreated,
        responses=conflict,
        openapi_extra=json_body(ChainIn),
    )
    async def create(request: Request, conn: Conn) -> ChainCreated:
        """Create a chain led by the caller's enterprise (its admins and chain analysts;
        platform admins name the leader)."""
        access.require_leading_role(request)
        body = parsed(ChainIn, await request.body())
        who = access.caller(request)
        leader = body.leader_id if who.role == "platform_admin" else who.enterprise_id
        cur = await conn.execute("SELECT id FROM enterprise WHERE id = %s", (leader,))
        access.require_leader(request, leader if await cur.fetchone() else None)
        assert leader is not None
        try:
            chain_id = await chains.create_chain(conn, body.code, body.name, leader)
        except MembershipRefused as exc:
            raise _refused(exc) from None
        await access.commit(request, conn, 201)
        return ChainCreated(id=chain_id, code=body.code, leader_id=leader)

    @router.post(
        "/api/v1/chains/{chain_id}/invitations",
        tags=tags,
        name="chain.invite",
        status_code=201,
        response_model=Invitation,
        responses=conflict,
        openapi_extra=json_body(InvitationIn),
    )
    async def invite(request: Request, conn: Conn, chain_id: Id) -> Invitation:
        """Invite a supplier into the chain (the leader's admins and chain analysts); it is a
        member once it accepts."""
        access.require_leader(request, await chains.leader_of(conn, chain_id))
        body = parsed(InvitationIn, await request.body())
        request.state.note.supplier_id = body.enterprise_id
        try:
            made = await chains.invite(
                conn, chain_id, body.enterprise_id, body.tier, access.caller(request).client_id
            )
        except MembershipRefused as exc:
            raise _refused(exc) from None
        await access.commit(request, conn, 201)
        return made

    @router.get(
        "/api/v1/invitations",
        tags=tags,
        name="invitation.list",
        response_model=list[Invitation],
    )
    async def listing(request: Request, conn: Conn) -> list[Invitation]:
        """Invitations to the caller's enterprise and from the chains it leads (platform
        admins: all)."""
        access.require_invitations(request)
        who = access.caller(request)
        return await chains.invitations_of(conn, who.enterprise_id)

    def answer_route(action: str) -> None:
        async def answer(request: Request, conn: Conn, invitation_id: Id) -> Invitation:
            found = await chains.get_invitation(conn, invitation_id)
            access.require_member(request, found.enterprise_id if found else None)
            request.state.note.partner_id = found.leader_id if found else None
            try:
                done = await chains.answer(
                    conn, invitation_id, action == "accept", access.caller(request).client_id
                )
            except MembershipRefused as exc:
                raise _refused(exc) from None
            await access.commit(request, conn, 200)
            return done

        answer.__doc__ = (
            f"{action.capitalize()} an invitation (the invited enterprise's admins)"
            + ("; the enterprise is a member from now on." if action == "accept" else ".")
        )
        router.post(
            f"/api/v1/invitations/{{invitation_id}}/{action}",
            tags=tags,
            name=f"invitation.{action}",
            response_model=Invitation,
            responses=conflict,
        )(answer)

    answer_route("accept")
    answer_route("decline")

    @router.post(
        "/api/v1/chains/{chain_id}/leave",
        tags=tags,
        name="chain.leave",
        status_code=204,
        response_class=Response,
        responses=conflict,
    )
    async def leave(request: Request, conn: Conn, chain_id: Id) -> None:
        """Leave the chain (the supplier's admins); a member until now, not after."""
        who = access.caller(request)
        access.require_leaver(request, await chains.leader_of(conn, chain_id) is not None)
        try:
            await chains.leave(conn, chain_id, who.enterprise_id or 0)
        except MembershipRefused as exc:
            raise _refused(exc) from None
        await access.commit(request, conn, 204)
