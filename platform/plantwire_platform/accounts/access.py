"""The authorization of ``/api/v1`` requests: reads what the rules of :mod:`.policy` need (the
caller's binding, the facts of the enterprise or group asked for) from the database on every
call, applies them, and notes the verdict with its reason code on the request's audit note
(the route class of :mod:`plantwire_platform.partner.context` commits it before the answer
leaves). A refusal raises :class:`~plantwire_platform.errors.ApiError` with the reason code as
its ``error``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import Request
from psycopg import AsyncConnection

from plantwire_platform.accounts import policy
from plantwire_platform.accounts.people import binding_of
from plantwire_platform.accounts.policy import EnterpriseFacts, GroupFacts, GroupKind, Verdict
from plantwire_platform.accounts.roles import Binding
from plantwire_platform.errors import ApiError
from plantwire_platform.partner.context import Note, record
from plantwire_platform.partner.tokens import Caller, Role
from plantwire_platform.translation import Text

_REGION = "coalesce(nullif(e.region, ''), p.region, '')"


def _caller(request: Request) -> tuple[Caller, Note]:
    return request.state.caller, request.state.note


def _apply(note: Note, verdict: Verdict) -> None:
    if not verdict.allowed:
        raise ApiError(verdict.status, verdict.reason, verdict.detail)
    note.reason = verdict.reason


async def enterprise_facts(
    conn: AsyncConnection[Any], enterprise_id: int
) -> EnterpriseFacts | None:
    cur = await conn.execute(
        f"SELECT e.id, e.park_id, {_REGION}, ARRAY(SELECT c.leader_id FROM chain c"
        "  WHERE c.leader_id = e.id OR c.id IN"
        "  (SELECT m.chain_id FROM chain_member m WHERE m.enterprise_id = e.id))"
        " FROM enterprise e LEFT JOIN park p ON p.id = e.park_id WHERE e.id = %s",
        (enterprise_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return EnterpriseFacts(int(row[0]), row[1], str(row[2]), frozenset(row[3]))


async def group_facts(conn: AsyncConnection[Any], kind: GroupKind, key: str) -> GroupFacts | None:
    if kind == "regions":
        cur = await conn.execute(
            "SELECT %s::text, NULL::bigint WHERE EXISTS"
            " (SELECT 1 FROM known_region WHERE region = %s)",
            (key, key),
        )
    elif not (key.isascii() and key.isdigit() and len(key) < 19):
        return None
    elif kind == "chains":
        cur = await conn.execute("SELECT id::text, leader_id FROM chain WHERE id = %s", (int(key),))
    else:
        cur = await conn.execute(
            "SELECT id::text, NULL::bigint FROM park WHERE id = %s", (int(key),)
        )
    row = await cur.fetchone()
    return GroupFacts(str(row[0]), row[1]) if row else None


async def _binding(conn: AsyncConnection[Any], caller: Caller) -> Binding:
    if caller.role == "platform_admin":
        return Binding()
    return await binding_of(conn, caller.client_id)


async def require_enterprise(
    request: Request, conn: AsyncConnection[Any], enterprise_id: int, scope: policy.Scope
) -> None:
    """Allow the request to read the enterprise's ``scope``, or refuse it."""
    caller, note = _caller(request)
    facts = await enterprise_facts(conn, enterprise_id)
    if facts is not None:
        note.supplier_id = facts.id
    verdict = policy.on_enterprise(caller.role, await _binding(conn, caller), scope, facts)
    _apply(note, verdict)


async def require_group(
    request: Request, conn: AsyncConnection[Any], kind: GroupKind, key: str
) -> None:
    """Allow the request to read the group's roll-up, or refuse it."""
    caller, note = _caller(request)
    facts = await group_facts(conn, kind, key)
    verdict = policy.on_group(caller.role, await _binding(conn, caller), kind, facts)
    _apply(note, verdict)


async def listing_filter(
    request: Request, conn: AsyncConnection[Any], kind: GroupKind | None
) -> Callable[[dict[str, Any]], bool]:
    """Which rows of a listing of enterprises (``kind`` None) or groups the caller sees: those
    it may read the indicators of. Partner clients are refused."""
    caller, note = _caller(request)
    if caller.role == "partner":
        _apply(note, policy.PARTNER)
    if caller.role == "platform_admin":
        note.reason = "platform_admin"
        return lambda row: True
    binding = await _binding(conn, caller)
    note.reason = "bound_only"
    if kind is None:
        ids = await _visible_enterprises(conn, caller, binding)
        return lambda row: row["id"] in ids

    def visible(row: dict[str, Any]) -> bool:
        facts = GroupFacts(str(row["id"]), row.get("leader_id"))
        return policy.on_group(caller.role, binding, kind, facts).allowed

    return visible


async def _visible_enterprises(
    conn: AsyncConnection[Any], caller: Caller, binding: Binding
) -> set[int]:
    cur = await conn.execute(
        "SELECT e.id FROM enterprise e LEFT JOIN park p ON p.id = e.park_id WHERE"
        " (%(role)s IN ('enterprise_admin', 'enterprise_viewer', 'chain_analyst')"
        "  AND e.id = %(ent)s)"
        " OR (%(role)s = 'chain_analyst' AND EXISTS (SELECT 1 FROM chain c"
        "  JOIN chain_member m ON m.chain_id = c.id"
        "  WHERE c.leader_id = %(ent)s AND m.enterprise_id = e.id))"
        " OR (%(role)s = 'park_authority' AND e.park_id = %(park)s)"
        f" OR (%(role)s = 'region_authority' AND {_REGION} = %(region)s)",
        {
            "role": caller.role,
            "ent": binding.enterprise_id,
            "park": binding.park_id,
            "region": binding.region,
        },
    )
    return {int(r[0]) for r in await cur.fetchall()}


async def require_people(
    request: Request, conn: AsyncConnection[Any], person_role: Role, enterprise_id: int | None
) -> None:
    """Allow the request to register such a person, or refuse it."""
    caller, note = _caller(request)
    if enterprise_id is not None:
        note.supplier_id = enterprise_id
    binding = await _binding(conn, caller)
    _apply(note, policy.on_people(caller.role, binding, person_role, enterprise_id))


def require_registrar(request: Request) -> None:
    """Refuse the request of a caller who registers nobody, before its body is read."""
    caller, note = _caller(request)
    refusal = policy.may_register_people(caller.role)
    if refusal is not None:
        _apply(note, refusal)


def require_people_listing(request: Request) -> int | None:
    """Allow the request to list people; returns whose: the enterprise (None: everyone's)."""
    caller, note = _caller(request)
    _apply(note, policy.on_people_listing(caller.role))
    return None if caller.role == "platform_admin" else caller.enterprise_id


def require_own_account(request: Request) -> str:
    """Allow the request to change its own account; returns whose (the username)."""
    caller, note = _caller(request)
    _apply(note, policy.on_own_account(caller.role))
    return caller.client_id


def require_platform_admin(request: Request, what: str = "enterprises") -> None:
    """Allow a platform admin's request (registering an enterprise or a park), refuse anyone
    else's."""
    caller, note = _caller(request)
    _apply(note, policy.on_create_enterprise(caller.role, what))


async def commit(request: Request, conn: AsyncConnection[Any], status: int) -> None:
    """Commit what the request changed on ``conn`` together with its audit entry (nothing is
    changed that is not audited)."""
    _, note = _caller(request)
    route: Any = request.scope["route"]
    await record(conn, route.ctx, note, status)


def caller(request: Request) -> Caller:
    """Who the request speaks for."""
    return _caller(request)[0]


def require_leader(request: Request, leader_id: int | None) -> None:
    """Allow the request to act for the chain leader ``leader_id``, or refuse it."""
    who, note = _caller(request)
    binding = Binding(who.enterprise_id)
    if leader_id is not None:
        note.partner_id = leader_id
    _apply(note, policy.on_chain_lead(who.role, binding, leader_id))


def require_leading_role(request: Request) -> None:
    """Refuse, before its body is read, a caller who can lead no chain."""
    who, note = _caller(request)
    if who.role != "platform_admin":
        verdict = policy.on_chain_lead(who.role, Binding(who.enterprise_id), who.enterprise_id)
        if not verdict.allowed:
            _apply(note, verdict)


def require_member(request: Request, enterprise_id: int | None) -> None:
    """Allow the request to answer for, or leave a chain as, ``enterprise_id``."""
    who, note = _caller(request)
    if enterprise_id is not None:
        note.supplier_id = enterprise_id
    _apply(note, policy.on_membership(who.role, Binding(who.enterprise_id), enterprise_id))


def require_invitations(request: Request) -> None:
    who, note = _caller(request)
    _apply(note, policy.on_invitations(who.role))


def require_leaver(request: Request, chain_exists: bool) -> None:
    """Allow the request to leave the chain for its own enterprise (its admins), or refuse it;
    platform admins leave no chain for an enterprise."""
    who, note = _caller(request)
    if who.role == "platform_admin":
        _apply(note, policy.Verdict(403, "role_forbidden", Text("policy.leaving")))
    require_member(request, who.enterprise_id if chain_exists else None)


async def require_park(request: Request, conn: AsyncConnection[Any], park_id: int | None) -> None:
    """Allow the request to ask enterprises into the park (None: no such park), or refuse it."""
    who, note = _caller(request)
    _apply(note, policy.on_park(who.role, await _binding(conn, who), park_id))


async def require_registrations(
    request: Request, conn: AsyncConnection[Any], kind: Literal["parks", "regions"]
) -> tuple[int | None, int | str | None]:
    """Allow the request to list the registrations into parks (or regions); returns whose:
    (enterprise, park id or region), both None for all."""
    who, note = _caller(request)
    _apply(note, policy.on_registrations(who.role, kind))
    if who.role == "platform_admin":
        return None, None
    if who.role == policy.GROUP_ROLE[kind]:
        binding = await _binding(conn, who)
        return None, binding.park_id if kind == "parks" else binding.region
    return who.enterprise_id, None


async def require_region(request: Request, conn: AsyncConnection[Any], region: str) -> None:
    """Allow the request to ask enterprises into the region, or refuse it."""
    who, note = _caller(request)
    _apply(note, policy.on_region(who.role, await _binding(conn, who), region))
