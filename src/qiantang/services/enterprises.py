"""Use cases on enterprises (the tenants): onboarding ("上云"), changes, removal."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.enterprise import (
    validate_credit_code,
    validate_industry_code,
    validate_region_code,
)
from qiantang.domain.errors import Conflict, PermissionDenied
from qiantang.domain.identifiers import child_prefix, validate_code
from qiantang.registry.tables import Enterprise, Grant, Membership, Platform, Product, RoleBinding
from qiantang.services.common import Page, paginate, referenced, utcnow
from qiantang.services.tenancy import (
    home_path,
    manageable_enterprise,
    visible_enterprise,
    visible_enterprises_filter,
)

__all__ = [
    "EnterpriseChange",
    "create_enterprise",
    "delete_enterprise",
    "list_enterprises",
    "update_enterprise",
]


@dataclass(frozen=True, slots=True)
class EnterpriseChange:
    """Fields a PATCH may change; None leaves a field as it is."""

    name: str | None = None
    industry_code: str | None = None
    region_code: str | None = None
    retention_days: int | None = None


def list_enterprises(
    db: Session,
    who: Principal,
    *,
    platform_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Enterprise]:
    """Visible enterprises; with `platform_id`, those at home in or members of it."""
    stmt = select(Enterprise).where(visible_enterprises_filter(who)).order_by(Enterprise.id)
    if platform_id is not None:
        members = select(Membership.enterprise_id).where(Membership.platform_id == platform_id)
        stmt = stmt.where(
            or_(Enterprise.home_platform_id == platform_id, Enterprise.id.in_(members))
        )
    return paginate(db, stmt, limit, offset)


def _next_code(db: Session, platform_id: int) -> str:
    codes = db.scalars(select(Enterprise.code).where(Enterprise.home_platform_id == platform_id))
    numbers = [int(c) for c in codes if c.isdigit()]
    return str(max(numbers, default=1000) + 1)


def create_enterprise(
    db: Session,
    who: Principal,
    *,
    name: str,
    credit_code: str,
    industry_code: str,
    region_code: str,
    home_platform_id: int,
    code: str | None = None,
) -> Enterprise:
    """Onboard an enterprise at its home platform (operators of that platform or above)."""
    credit = validate_credit_code(credit_code)
    industry = validate_industry_code(industry_code)
    region = validate_region_code(region_code)
    home = referenced(db, Platform, home_platform_id, "home_platform_id", "platform")
    if not who.operates(home.path):
        raise PermissionDenied("only an operator of the home platform may onboard an enterprise")
    if db.scalar(select(Enterprise.id).where(Enterprise.credit_code == credit)):
        raise Conflict.of("credit_code", "unique", "an enterprise with this code exists")
    code = validate_code(code) if code else _next_code(db, home.id)
    prefix = child_prefix(home.prefix, code)
    taken = db.scalar(select(Enterprise.id).where(Enterprise.prefix == prefix)) or db.scalar(
        select(Platform.id).where(Platform.prefix == prefix)
    )
    if taken:
        raise Conflict.of("code", "unique", f"prefix {prefix} is already delegated")
    enterprise = Enterprise(
        name=name,
        credit_code=credit,
        industry_code=industry,
        region_code=region,
        home_platform_id=home.id,
        code=code,
        prefix=prefix,
        created_at=utcnow(),
    )
    db.add(enterprise)
    db.commit()
    return enterprise


def update_enterprise(
    db: Session, who: Principal, enterprise_id: int, change: EnterpriseChange
) -> Enterprise:
    """Change an enterprise's metadata (its admin, or an operator over its home)."""
    enterprise = visible_enterprise(db, who, enterprise_id)
    if not manageable_enterprise(db, who, enterprise):
        raise PermissionDenied("only the enterprise's admin or its home operator may change it")
    if change.name is not None:
        enterprise.name = change.name
    if change.industry_code is not None:
        enterprise.industry_code = validate_industry_code(change.industry_code)
    if change.region_code is not None:
        enterprise.region_code = validate_region_code(change.region_code)
    if change.retention_days is not None:
        enterprise.retention_days = change.retention_days
    db.commit()
    return enterprise


def delete_enterprise(db: Session, who: Principal, enterprise_id: int) -> None:
    """Offboard an enterprise that has no products left (operators over its home)."""
    enterprise = visible_enterprise(db, who, enterprise_id)
    if not who.operates(home_path(db, enterprise)):
        raise PermissionDenied("only an operator of the home platform may remove an enterprise")
    if db.scalar(select(func.count()).where(Product.enterprise_id == enterprise.id)):
        raise Conflict.of("id", "not_empty", "the enterprise still has products")
    db.execute(delete(Membership).where(Membership.enterprise_id == enterprise.id))
    db.execute(delete(Grant).where(Grant.enterprise_id == enterprise.id))
    db.execute(delete(RoleBinding).where(RoleBinding.enterprise_id == enterprise.id))
    db.delete(enterprise)
    db.commit()
