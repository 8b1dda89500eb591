"""Use cases on memberships: an enterprise joining platforms besides its home."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import Conflict, NotFound, PermissionDenied
from qiantang.registry.tables import Enterprise, Membership, Platform
from qiantang.services.common import Page, paginate, referenced, subtree_filter, utcnow
from qiantang.services.tenancy import (
    home_path,
    manageable_enterprise,
    visible_enterprise,
    visible_enterprises_filter,
)

__all__ = ["create_membership", "delete_membership", "get_membership", "list_memberships"]


def _visible_filter(who: Principal) -> object:
    platform_ok = select(Platform.id).where(
        Platform.id == Membership.platform_id, subtree_filter(who.observed_paths())
    )
    enterprise_ok = select(Enterprise.id).where(
        Enterprise.id == Membership.enterprise_id, visible_enterprises_filter(who)
    )
    return or_(platform_ok.exists(), enterprise_ok.exists())


def list_memberships(
    db: Session,
    who: Principal,
    *,
    enterprise_id: int | None = None,
    platform_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Membership]:
    """Memberships the principal may see, filtered by enterprise and/or platform."""
    stmt = select(Membership).where(_visible_filter(who)).order_by(Membership.id)  # type: ignore[arg-type]
    if enterprise_id is not None:
        stmt = stmt.where(Membership.enterprise_id == enterprise_id)
    if platform_id is not None:
        stmt = stmt.where(Membership.platform_id == platform_id)
    return paginate(db, stmt, limit, offset)


def get_membership(db: Session, who: Principal, membership_id: int) -> Membership:
    """One membership, if visible through its enterprise or its platform."""
    membership = db.get(Membership, membership_id)
    if membership is None:
        raise NotFound("membership", membership_id)
    platform = db.get(Platform, membership.platform_id)
    if platform is not None and who.observes(platform.path):
        return membership
    visible_enterprise(db, who, membership.enterprise_id)  # raises NotFound when not visible
    return membership


def create_membership(
    db: Session, who: Principal, *, enterprise_id: int, platform_id: int
) -> Membership:
    """The enterprise joins a platform: its admin or an operator over its home decides."""
    enterprise = visible_enterprise(db, who, enterprise_id)
    platform = referenced(db, Platform, platform_id, "platform_id", "platform")
    if not manageable_enterprise(db, who, enterprise):
        raise PermissionDenied("only the enterprise's admin or its home operator may join it")
    if platform.id == enterprise.home_platform_id:
        raise Conflict.of("platform_id", "not_home", "the home platform is implicitly joined")
    clash = select(Membership.id).where(
        Membership.enterprise_id == enterprise.id, Membership.platform_id == platform.id
    )
    if db.scalar(clash):
        raise Conflict.of("platform_id", "unique", "the enterprise is already a member")
    membership = Membership(
        enterprise_id=enterprise.id, platform_id=platform.id, created_at=utcnow()
    )
    db.add(membership)
    db.commit()
    return membership


def delete_membership(db: Session, who: Principal, membership_id: int) -> None:
    """End a membership: the enterprise's side or the platform's operators may."""
    membership = get_membership(db, who, membership_id)
    platform = db.get(Platform, membership.platform_id)
    enterprise = db.get(Enterprise, membership.enterprise_id)
    allowed = (platform is not None and who.operates(platform.path)) or (
        enterprise is not None
        and (who.administers(enterprise.id) or who.operates(home_path(db, enterprise)))
    )
    if not allowed:
        raise PermissionDenied("only the enterprise's admin or a platform operator may leave")
    db.delete(membership)
    db.commit()
