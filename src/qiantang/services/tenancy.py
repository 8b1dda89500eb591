"""Who reaches which enterprise: the tenant-visibility rules in SQL and in Python.

An enterprise is visible to its own users and to operators and analysts of any platform
at or above its home platform or one of the platforms it is a member of. Platform roles see
its metadata and indicators only; products, devices and telemetry stay with the enterprise
(unless a grant says otherwise, for telemetry).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import NotFound
from qiantang.registry.tables import Enterprise, Membership, Platform
from qiantang.services.common import subtree_filter

__all__ = [
    "enterprise_paths",
    "home_path",
    "manageable_enterprise",
    "visible_enterprise",
    "visible_enterprises_filter",
]


def home_path(db: Session, enterprise: Enterprise) -> str:
    """The materialised path of the enterprise's home platform."""
    return db.scalar(select(Platform.path).where(Platform.id == enterprise.home_platform_id)) or ""


def enterprise_paths(db: Session, enterprise: Enterprise) -> list[str]:
    """Paths of the home platform and of every platform the enterprise is a member of."""
    member = select(Platform.path).join(Membership, Membership.platform_id == Platform.id)
    paths = list(db.scalars(member.where(Membership.enterprise_id == enterprise.id)))
    return [home_path(db, enterprise), *paths]


def visible_enterprises_filter(who: Principal) -> ColumnElement[bool]:
    """SQL condition on `Enterprise` rows the principal may see."""
    observed = who.observed_paths()
    home = (
        select(Platform.id)
        .where(Platform.id == Enterprise.home_platform_id)
        .where(subtree_filter(observed))
    )
    member = (
        select(Membership.id)
        .join(Platform, Platform.id == Membership.platform_id)
        .where(Membership.enterprise_id == Enterprise.id)
        .where(subtree_filter(observed))
    )
    return or_(Enterprise.id.in_(list(who.enterprise_roles)), exists(home), exists(member))


def visible_enterprise(db: Session, who: Principal, enterprise_id: int) -> Enterprise:
    """The enterprise if the principal may see it; NotFound otherwise (even if it exists)."""
    enterprise = db.get(Enterprise, enterprise_id)
    if enterprise is None:
        raise NotFound("enterprise", enterprise_id)
    if who.is_member_of(enterprise.id) or who.observes_any(enterprise_paths(db, enterprise)):
        return enterprise
    raise NotFound("enterprise", enterprise_id)


def manageable_enterprise(db: Session, who: Principal, enterprise: Enterprise) -> bool:
    """Its admin, or an operator at or above its home platform."""
    return who.administers(enterprise.id) or who.operates(home_path(db, enterprise))
