"""Roles and what binds each one: the enterprise its people belong to, or the park or region
an authority speaks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from plantwire_platform.translation import Text

if TYPE_CHECKING:  # the parser reads this module: it must load without the platform extra
    from plantwire_platform.partner.tokens import Role

PersonRole = Literal[
    "platform_admin",
    "enterprise_admin",
    "enterprise_viewer",
    "chain_analyst",
    "park_authority",
    "region_authority",
]
PERSON_ROLES: tuple[PersonRole, ...] = (
    "platform_admin",
    "enterprise_admin",
    "enterprise_viewer",
    "chain_analyst",
    "park_authority",
    "region_authority",
)
ENTERPRISE_ROLES: frozenset[Role] = frozenset(
    {"enterprise_admin", "enterprise_viewer", "chain_analyst", "partner"}
)
"""Roles held by an enterprise's people or clients."""


@dataclass(frozen=True, slots=True)
class Binding:
    """What a role is bound to: an enterprise, a park (by id) or a region (by name)."""

    enterprise_id: int | None = None
    park_id: int | None = None
    region: str | None = None


def binding_problem(role: Role, binding: Binding) -> Text | None:
    """Why ``binding`` does not fit ``role``, if it does not."""
    has = {
        "enterprise": binding.enterprise_id is not None,
        "park": binding.park_id is not None,
        "region": bool(binding.region),
    }
    needs = (
        "enterprise"
        if role in ENTERPRISE_ROLES
        else "park"
        if role == "park_authority"
        else "region"
        if role == "region_authority"
        else None
    )
    extra = [k for k, v in has.items() if v and k != needs]
    if needs is not None and not has[needs]:
        return Text(f"binding.needs_{needs}", role=role)
    if extra:
        which = "_or_".join(extra)
        return Text(f"binding.has_no_{which}", role=role)
    return None


API_ROLES: frozenset[Role] = frozenset(PERSON_ROLES)
"""Roles ``/api/v1`` serves: everyone but partner clients, who use ``/partner/v1``."""
