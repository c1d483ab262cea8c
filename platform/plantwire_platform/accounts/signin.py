"""Sign-in for people: the OAuth2 resource owner password flow (RFC 6749 section 4.3) at
``POST /auth/token``, issuing the same short-lived tokens as the partner interface's client
credentials, throttled and audited like them; and the console's session (:mod:`.sessions`):
a sign-in with ``session=cookie`` also sets an httpOnly refresh cookie, which
``POST /auth/refresh`` exchanges (rotated) for a new access token and ``POST /auth/signout``
ends."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from plantwire_platform.accounts import people, sessions
from plantwire_platform.errors import ApiError
from plantwire_platform.partner.context import ERRORS, Conn, Context, Noted, record
from plantwire_platform.partner.identity import TokenResponse, form_fields, grant_token
from plantwire_platform.partner.tokens import Caller, issue_token
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
                        "session": {
                            "type": "string",
                            "enum": ["cookie"],
                            "description": "also open a console session: an httpOnly "
                            "refresh cookie for POST /auth/refresh",
                        },
                    },
                }
            }
        },
    }
}


def _keep(request: Request, response: Response, token: str, ttl_s: int) -> None:
    """Hand the browser the session's refresh token: httpOnly (no script reads it), sent only
    to ``/auth`` and only by the platform's own pages (SameSite=Strict)."""
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=ttl_s,
        path="/auth",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _forget() -> dict[str, str]:
    """The header that removes the session cookie from the browser."""
    gone = Response()
    gone.delete_cookie(sessions.COOKIE, path="/auth", httponly=True, samesite="strict")
    return {"Set-Cookie": gone.headers["set-cookie"]}


def router(ctx: Context, route: type[APIRoute]) -> APIRouter:
    r = APIRouter(tags=["accounts"], route_class=route, responses=ERRORS)

    def access(caller: Caller) -> TokenResponse:
        ttl_s = ctx.settings.token_ttl_s
        return TokenResponse(access_token=issue_token(caller, ctx.key, ttl_s), expires_in=ttl_s)

    @r.post(
        "/auth/token",
        response_model=TokenResponse,
        openapi_extra=_TOKEN_BODY,
        name="person.sign_in",
    )
    async def sign_in(
        request: Request, response: Response, conn: Conn, note: Noted
    ) -> TokenResponse:
        """Sign in as a person: form fields ``grant_type=password``, ``username`` and
        ``password``; answers a Bearer token for ``/api/v1`` (and, for the roles it serves,
        ``/partner/v1``) that expires after ``PLANTWIRE_TOKEN_TTL_S`` seconds. With
        ``session=cookie`` (the console) it also opens a session: an httpOnly cookie that
        ``POST /auth/refresh`` exchanges for new tokens until ``PLANTWIRE_SESSION_TTL_S``
        passes unused.

        Throttled before any password is checked, per address and per username (token buckets,
        then exponential backoff after failed attempts), like the client credentials flow."""
        field = await form_fields(request)
        username, password = field.get("username"), field.get("password")
        note.claimed = (username or "")[:200]
        if field.get("grant_type") != "password":
            raise ApiError(400, "unsupported_grant_type", Text("signin.grant"))
        if not username or not password:
            raise ApiError(400, "invalid_request", Text("signin.fields"))
        granted = await grant_token(
            ctx,
            note,
            username,
            lambda: people.authenticate(conn, username, password),
            ApiError(401, "invalid_grant", Text("signin.refused")),
            Text("signin.busy"),
        )
        if field.get("session") == "cookie" and note.caller is not None:
            ttl_s = ctx.settings.session_ttl_s
            _keep(request, response, await sessions.open_session(conn, note.caller, ttl_s), ttl_s)
            await record(conn, ctx, note, 200)
        return granted

    @r.post("/auth/refresh", response_model=TokenResponse, name="person.refresh")
    async def refresh(
        request: Request, response: Response, conn: Conn, note: Noted
    ) -> TokenResponse:
        """A new access token for the console's session (its httpOnly cookie, set by a
        sign-in with ``session=cookie``), and the session's next refresh token in its place:
        each is good for one refresh. Refused (401 ``invalid_grant``, the cookie removed) when
        the session is unknown, expired, signed out, or ended by a password change, a disabled
        account or revoked tokens; a refresh token used again ends its session, unless it was
        replaced moments ago (409 ``conflict``: another tab's refresh; its cookie is the one to
        use)."""
        token = request.cookies.get(sessions.COOKIE)
        if not token:
            raise ApiError(401, "invalid_grant", Text("session.missing"), _forget())
        got = await sessions.refresh(conn, token, ctx.settings.session_ttl_s)
        if isinstance(got, sessions.Refusal):
            note.claimed = got.client_id
            if got.rotated:  # the cookie another refresh just set is the one to use
                raise ApiError(409, "conflict", got.text)
            if got.family is not None:
                await sessions.close_family(conn, got.family)
                await conn.commit()
            raise ApiError(401, "invalid_grant", got.text, _forget())
        note.caller = got.caller
        await record(conn, ctx, note, 200)
        _keep(request, response, got.token, ctx.settings.session_ttl_s)
        return access(got.caller)

    @r.post("/auth/signout", status_code=204, response_class=Response, name="person.sign_out")
    async def sign_out(request: Request, conn: Conn, note: Noted) -> Response:
        """End the console's session (its cookie): its refresh token gets nothing more. Access
        tokens already issued run out by themselves (``PLANTWIRE_TOKEN_TTL_S``)."""
        token = request.cookies.get(sessions.COOKIE)
        if token:
            note.claimed = await sessions.sign_out(conn, token) or ""
        await record(conn, ctx, note, 204)
        return Response(status_code=204, headers=_forget())

    return r
