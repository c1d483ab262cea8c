"""Who may read what on ``/api/v1``: the rules as pure functions of the caller's role, what the
role is bound to, and the facts of the enterprise or group asked for. Every verdict carries a
reason code, which the audit entry of the request records.

Enterprise detail (its sites, lines, machines) and explanations (per-machine times) go to its own
people only; enterprise-level aggregates also to the roles bound to a chain it belongs to (the
chain leader's analysts), its park or its region; a group's roll-up only to the roles bound to
that group. Partner clients use ``/partner/v1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from plantwire_platform.accounts.roles import Binding
from plantwire_platform.partner.tokens import Role
from plantwire_platform.translation import Text

Scope = Literal["detail", "aggregate", "manage"]
"""What of an enterprise a request reads or changes: its ``detail`` (sites, lines, machines,
explanations), its ``aggregate`` (indicators), or, to ``manage`` it, its registry."""
GroupKind = Literal["chains", "parks", "regions"]
OWN_DETAIL: frozenset[Role] = frozenset({"enterprise_admin", "enterprise_viewer"})
OWN_AGGREGATE: frozenset[Role] = frozenset(
    {"enterprise_admin", "enterprise_viewer", "chain_analyst"}
)
GROUP_ROLE: dict[GroupKind, Role] = {
    "chains": "chain_analyst",
    "parks": "park_authority",
    "regions": "region_authority",
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Allowed (``status`` 200) or refused with ``status``; ``reason`` is the audited code."""

    status: int
    reason: str
    detail: Text | None = None

    @property
    def allowed(self) -> bool:
        return self.status < 400


@dataclass(frozen=True, slots=True)
class EnterpriseFacts:
    """What the rules need to know of an enterprise: its park, its region (its own, else its
    park's), and the leaders of the chains it leads or supplies."""

    id: int
    park_id: int | None = None
    region: str = ""
    chain_leaders: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """A group that exists: its key (id, or a region's name) and, for a chain, its leader."""

    key: str
    leader_id: int | None = None


PARTNER = Verdict(403, "role_forbidden", Text("policy.partner"))


def _allow(reason: str) -> Verdict:
    return Verdict(200, reason)


def on_enterprise(
    role: Role, binding: Binding, scope: Scope, facts: EnterpriseFacts | None
) -> Verdict:
    """May the caller read this enterprise's ``detail`` or ``aggregate`` (indicators)? ``facts``
    is None for an enterprise that does not exist (told apart only for platform admins)."""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return (
            _allow("platform_admin")
            if facts
            else Verdict(404, "not_found", Text("policy.no_enterprise"))
        )
    own = facts is not None and binding.enterprise_id == facts.id
    if scope == "manage":
        if role != "enterprise_admin":
            return Verdict(403, "role_forbidden", Text("policy.manage", role=role))
        return _allow("own_enterprise") if own else _not_bound("enterprise")
    if scope == "detail":
        if role not in OWN_DETAIL:
            return Verdict(403, "role_forbidden", Text("policy.detail", role=role))
        return _allow("own_enterprise") if own else _not_bound("enterprise")
    if role in OWN_AGGREGATE and own:
        return _allow("own_enterprise")
    if facts is not None:
        if role == "chain_analyst" and binding.enterprise_id in facts.chain_leaders:
            return _allow("chain_leader")
        if (
            role == "park_authority"
            and facts.park_id is not None
            and facts.park_id == binding.park_id
        ):
            return _allow("park_authority")
        if role == "region_authority" and facts.region and facts.region == binding.region:
            return _allow("region_authority")
    return _not_bound("enterprise")


def on_group(role: Role, binding: Binding, kind: GroupKind, facts: GroupFacts | None) -> Verdict:
    """May the caller read this group's roll-up? ``facts`` is None for a group that does not
    exist (told apart only for platform admins)."""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return (
            _allow("platform_admin")
            if facts
            else Verdict(404, "not_found", Text("policy.no_group"))
        )
    if role != GROUP_ROLE[kind]:
        return Verdict(403, "role_forbidden", Text(f"policy.reads_no_{kind}", role=role))
    if facts is not None and (
        (kind == "chains" and facts.leader_id == binding.enterprise_id)
        or (kind == "parks" and facts.key == str(binding.park_id))
        or (kind == "regions" and facts.key == binding.region)
    ):
        return _allow("chain_leader" if kind == "chains" else role)
    return _not_bound(kind.removesuffix("s"))


def _not_bound(what: str) -> Verdict:
    return Verdict(403, "not_bound", Text(f"policy.not_bound.{what}"))


def on_people(
    role: Role, binding: Binding, person_role: Role, enterprise_id: int | None
) -> Verdict:
    """May the caller register a person of ``person_role`` bound to ``enterprise_id``? Platform
    admins register anyone; enterprise admins the admins, viewers and analysts of their own
    enterprise."""
    if role == "platform_admin":
        return _allow("platform_admin")
    if role != "enterprise_admin":
        return Verdict(403, "role_forbidden", Text("policy.registers_nobody", role=role))
    if person_role not in OWN_AGGREGATE:
        return Verdict(403, "role_forbidden", Text("policy.registers_no", role=person_role))
    if enterprise_id != binding.enterprise_id:
        return _not_bound("enterprise")
    return _allow("own_enterprise")


def on_people_listing(role: Role) -> Verdict:
    """Who lists people: platform admins (all), enterprise admins (their enterprise's)."""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return _allow("platform_admin")
    if role == "enterprise_admin":
        return _allow("own_enterprise")
    return Verdict(403, "role_forbidden", Text("policy.lists_no_people", role=role))


def on_own_account(role: Role) -> Verdict:
    """Every person changes their own password (partner clients have secrets, not passwords)."""
    if role == "partner":
        return PARTNER
    return _allow("own_account")


def may_register_people(role: Role) -> Verdict | None:
    """The refusal of a caller who registers nobody, before its request is read."""
    if role in ("platform_admin", "enterprise_admin"):
        return None
    return Verdict(403, "role_forbidden", Text("policy.registers_nobody", role=role))


def on_create_enterprise(role: Role, what: str = "enterprises") -> Verdict:
    """Enterprises (and parks) are registered by platform admins."""
    if role == "platform_admin":
        return _allow("platform_admin")
    return Verdict(403, "role_forbidden", Text(f"policy.registered_by_admins.{what}"))


LEADS: frozenset[Role] = frozenset({"enterprise_admin", "chain_analyst"})
"""Roles that act for a chain leader: create its chains, invite suppliers."""


def on_chain_lead(role: Role, binding: Binding, leader_id: int | None) -> Verdict:
    """May the caller act for the leader ``leader_id`` of a chain (None: no such chain)?"""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return (
            _allow("platform_admin")
            if leader_id
            else Verdict(404, "not_found", Text("policy.no_chain"))
        )
    if role not in LEADS:
        return Verdict(403, "role_forbidden", Text("policy.leads_no_chains", role=role))
    if leader_id is not None and leader_id == binding.enterprise_id:
        return _allow("chain_leader")
    return _not_bound("chain")


def on_membership(role: Role, binding: Binding, enterprise_id: int | None) -> Verdict:
    """May the caller answer an invitation to, or leave, a chain for ``enterprise_id`` (None:
    no such invitation or chain)? Only the supplier's admins: its consent is its own, not a
    platform admin's to give."""
    if role == "partner":
        return PARTNER
    if role != "enterprise_admin":
        return Verdict(403, "role_forbidden", Text("policy.memberships"))
    if enterprise_id is not None and enterprise_id == binding.enterprise_id:
        return _allow("own_enterprise")
    return _not_bound("membership")


def on_invitations(role: Role) -> Verdict:
    """Who lists invitations: platform admins (all) and an enterprise's people (its own)."""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return _allow("platform_admin")
    if role in OWN_AGGREGATE:
        return _allow("own_enterprise")
    return Verdict(403, "role_forbidden", Text("policy.no_invitations", role=role))


def on_park(role: Role, binding: Binding, park_id: int | None) -> Verdict:
    """May the caller ask enterprises into the park ``park_id`` (None: no such park)?"""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return (
            _allow("platform_admin")
            if park_id
            else Verdict(404, "not_found", Text("policy.no_park"))
        )
    if role != "park_authority":
        return Verdict(403, "role_forbidden", Text("policy.into_park", role=role))
    if park_id is not None and park_id == binding.park_id:
        return _allow("park_authority")
    return _not_bound("park")


def on_registrations(role: Role, kind: Literal["parks", "regions"]) -> Verdict:
    """Who lists the registrations into parks (or regions): platform admins (all), park
    (region) authorities (their group's), an enterprise's people (their own)."""
    if role == "partner":
        return PARTNER
    if role in ("platform_admin", GROUP_ROLE[kind]):
        return _allow(role)
    if role in OWN_AGGREGATE:
        return _allow("own_enterprise")
    return Verdict(403, "role_forbidden", Text(f"policy.no_registrations.{kind}", role=role))


def on_region(role: Role, binding: Binding, region: str) -> Verdict:
    """May the caller ask enterprises into the region ``region``?"""
    if role == "partner":
        return PARTNER
    if role == "platform_admin":
        return _allow("platform_admin")
    if role != "region_authority":
        return Verdict(403, "role_forbidden", Text("policy.into_region", role=role))
    if region == binding.region:
        return _allow("region_authority")
    return _not_bound("region")
