"""Who may do what: roles, principals and the pure access decisions.

Platform roles (`operator`, `analyst`) bind at a platform and reach its whole subtree;
enterprise roles (`admin`, `engineer`, `viewer`) bind at one enterprise and reach only it.
Decisions here take materialised platform paths (``/1/5/``) so they need no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from qiantang.domain.platform import path_ids

__all__ = ["ENTERPRISE_ROLES", "PLATFORM_ROLES", "Principal", "Role"]


class Role(StrEnum):
    """A role a user holds at one node of the tree."""

    OPERATOR = "operator"
    ANALYST = "analyst"
    ADMIN = "admin"
    ENGINEER = "engineer"
    VIEWER = "viewer"


PLATFORM_ROLES = frozenset({Role.OPERATOR, Role.ANALYST})
ENTERPRISE_ROLES = frozenset({Role.ADMIN, Role.ENGINEER, Role.VIEWER})
_WRITERS = frozenset({Role.ADMIN, Role.ENGINEER})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user (directly or through one of their API keys)."""

    user_id: int
    username: str
    platform_roles: dict[int, Role] = field(default_factory=dict)
    enterprise_roles: dict[int, Role] = field(default_factory=dict)
    bound_paths: dict[int, str] = field(default_factory=dict)
    key_id: int | None = None

    def observed_paths(self) -> list[str]:
        """Paths of the platforms where the principal holds a platform role."""
        return [self.bound_paths[p] for p in self.platform_roles if p in self.bound_paths]

    def operated_paths(self) -> list[str]:
        """Paths of the platforms where the principal is an operator."""
        return [
            self.bound_paths[p]
            for p, role in self.platform_roles.items()
            if role is Role.OPERATOR and p in self.bound_paths
        ]

    # --- platforms -------------------------------------------------------------------------
    def operates(self, platform_path: str) -> bool:
        """Operator at the platform or one of its ancestors."""
        return any(self.platform_roles.get(p) is Role.OPERATOR for p in path_ids(platform_path))

    def observes(self, platform_path: str) -> bool:
        """Operator or analyst at the platform or one of its ancestors."""
        return any(p in self.platform_roles for p in path_ids(platform_path))

    def observes_any(self, platform_paths: Iterable[str]) -> bool:
        """Observes at least one of the platforms."""
        return any(self.observes(p) for p in platform_paths)

    # --- enterprises -----------------------------------------------------------------------
    def enterprise_role(self, enterprise_id: int) -> Role | None:
        """The role held in this enterprise, if any."""
        return self.enterprise_roles.get(enterprise_id)

    def is_member_of(self, enterprise_id: int) -> bool:
        """Holds any enterprise role in the enterprise."""
        return enterprise_id in self.enterprise_roles

    def writes_in(self, enterprise_id: int) -> bool:
        """May change the enterprise's products and devices (admin or engineer)."""
        return self.enterprise_roles.get(enterprise_id) in _WRITERS

    def administers(self, enterprise_id: int) -> bool:
        """Admin of the enterprise."""
        return self.enterprise_roles.get(enterprise_id) is Role.ADMIN
