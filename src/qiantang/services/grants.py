"""Use cases on grants: only the enterprise's admin gives or revokes consent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import InvalidInput, NotFound, PermissionDenied
from qiantang.domain.grant import ALL
from qiantang.registry.tables import Grant, Platform, Product
from qiantang.services.common import (
    Page,
    naive_utc,
    paginate,
    referenced,
    subtree_filter,
    utcnow,
)
from qiantang.services.tenancy import visible_enterprise

__all__ = [
    "GrantChange",
    "create_grant",
    "get_grant",
    "list_grants",
    "revoke_grant",
    "update_grant",
]


@dataclass(frozen=True, slots=True)
class GrantChange:
    """Fields a PATCH may change; None leaves a field as it is."""

    products: Sequence[str] | None = None
    properties: Sequence[str] | None = None
    expires_at: datetime | None = None


def _visible_filter(who: Principal) -> object:
    platform_ok = select(Platform.id).where(
        Platform.id == Grant.platform_id, subtree_filter(who.observed_paths())
    )
    return or_(Grant.enterprise_id.in_(list(who.enterprise_roles)), platform_ok.exists())


def list_grants(
    db: Session,
    who: Principal,
    *,
    enterprise_id: int | None = None,
    platform_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Grant]:
    """Grants given by the principal's enterprises or to platforms it observes."""
    stmt = select(Grant).where(_visible_filter(who)).order_by(Grant.id)  # type: ignore[arg-type]
    if enterprise_id is not None:
        stmt = stmt.where(Grant.enterprise_id == enterprise_id)
    if platform_id is not None:
        stmt = stmt.where(Grant.platform_id == platform_id)
    return paginate(db, stmt, limit, offset)


def get_grant(db: Session, who: Principal, grant_id: int) -> Grant:
    """One grant, visible to the granting enterprise and to the receiving platform's side."""
    grant = db.get(Grant, grant_id)
    if grant is None:
        raise NotFound("grant", grant_id)
    platform = db.get(Platform, grant.platform_id)
    if who.is_member_of(grant.enterprise_id) or (platform and who.observes(platform.path)):
        return grant
    raise NotFound("grant", grant_id)


def _check_products(db: Session, enterprise_id: int, products: Sequence[str]) -> list[str]:
    if not products:
        raise InvalidInput.of("products", "min_items", "name at least one product key, or '*'")
    if ALL in products:
        return [ALL]
    owned = set(
        db.scalars(select(Product.product_key).where(Product.enterprise_id == enterprise_id))
    )
    for i, key in enumerate(products):
        if key not in owned:
            raise InvalidInput.of(
                f"products[{i}]", "exists", f"the enterprise has no product {key!r}"
            )
    return list(dict.fromkeys(products))


def _check_expiry(expires_at: datetime | None) -> datetime | None:
    if expires_at is None:
        return None
    naive = naive_utc(expires_at)
    if naive <= utcnow():
        raise InvalidInput.of("expires_at", "future", "a grant must expire in the future")
    return naive


def create_grant(
    db: Session,
    who: Principal,
    *,
    enterprise_id: int,
    platform_id: int,
    products: Sequence[str],
    properties: Sequence[str] = (),
    expires_at: datetime | None = None,
) -> Grant:
    """The enterprise's admin lets a platform read the named products' properties."""
    enterprise = visible_enterprise(db, who, enterprise_id)
    if not who.administers(enterprise.id):
        raise PermissionDenied("only the enterprise's admin may grant access to its data")
    platform = referenced(db, Platform, platform_id, "platform_id", "platform")
    grant = Grant(
        enterprise_id=enterprise.id,
        platform_id=platform.id,
        products=_check_products(db, enterprise.id, products),
        properties=list(dict.fromkeys(properties)),
        expires_at=_check_expiry(expires_at),
        created_at=utcnow(),
    )
    db.add(grant)
    db.commit()
    return grant


def update_grant(db: Session, who: Principal, grant_id: int, change: GrantChange) -> Grant:
    """Narrow, widen or extend a grant (the enterprise's admin)."""
    grant = get_grant(db, who, grant_id)
    if not who.administers(grant.enterprise_id):
        raise PermissionDenied("only the enterprise's admin may change a grant")
    if change.products is not None:
        grant.products = _check_products(db, grant.enterprise_id, change.products)
    if change.properties is not None:
        grant.properties = list(dict.fromkeys(change.properties))
    if change.expires_at is not None:
        grant.expires_at = _check_expiry(change.expires_at)
    db.commit()
    return grant


def revoke_grant(db: Session, who: Principal, grant_id: int) -> Grant:
    """Revoke at once; the grant stays on record with its revocation time."""
    grant = get_grant(db, who, grant_id)
    if not who.administers(grant.enterprise_id):
        raise PermissionDenied("only the enterprise's admin may revoke a grant")
    if grant.revoked_at is None:
        grant.revoked_at = utcnow()
        db.commit()
    return grant
