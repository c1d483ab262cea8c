"""Sign-in for people: the OAuth2 resource owner password flow (RFC 6749 section 4.3) at
``POST /auth/token``, issuing the same short-lived tokens as the partner interface's client
credentials, throttled and audited like them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute

from plantwire_platform.accounts import people
from plantwire_platform.errors import ApiError
from plantwire_platform.partner.context import ERRORS, Conn, Context, Noted
from plantwire_platform.partner.identity import TokenResponse, form_fields, grant_token
from plantwire_platform.translation import Text

_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "username", "password"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["password"]},
                        "username": {"type": "string"},
                        "password": {"type": "string", "format": "password"},
                    },
                }
            }
        },
    }
}


def router(ctx: Context, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(tags=["accounts"], route_class=route, responses=ERRORS)

    @r.post(
        "/auth/token",
        response_model=TokenResponse,
        openapi_extra=_TOKEN_BODY,
        name="person.sign_in",
    )
    async def sign_in(request: Request, conn: Conn, note: Noted) -> TokenResponse:
        """Sign in as a person: form fields ``grant_type=password``, ``username`` and
        ``password``; answers a Bearer token for ``/api/v1`` (and, for the roles it serves,
        ``/partner/v1``) that expires after ``PLANTWIRE_TOKEN_TTL_S`` seconds.

        Throttled before any password is checked, per address and per username (token buckets,
        then exponential backoff after failed attempts), like the client credentials flow."""
        field = await form_fields(request)
        username, password = field.get("username"), field.get("password")
        note.claimed = (username or "")[:200]
        if field.get("grant_type") != "password":
            raise ApiError(400, "unsupported_grant_type", Text("signin.grant"))
        if not username or not password:
            raise ApiError(400, "invalid_request", Text("signin.fields"))
        return await grant_token(
            ctx,
            note,
            username,
            lambda: people.authenticate(conn, username, password),
            ApiError(401, "invalid_grant", Text("signin.refused")),
            Text("signin.busy"),
        )

    return r
