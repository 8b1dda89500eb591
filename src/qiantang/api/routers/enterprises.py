"""`/enterprises` and `/memberships`: the tenants and the platforms they belong to."""

from __future__ import annotations

from fastapi import APIRouter, Response

from qiantang.api.deps import Caller, Db
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import (
    EnterpriseIn,
    EnterpriseOut,
    EnterprisePatch,
    MembershipIn,
    MembershipOut,
    PageOut,
)
from qiantang.services import enterprises as svc
from qiantang.services import memberships as msvc
from qiantang.services.tenancy import visible_enterprise

router = APIRouter(tags=["enterprises"])


@router.get("/enterprises")
def list_enterprises(
    db: Db, who: Caller, platform_id: int | None = None, limit: Limit = 50, offset: Offset = 0
) -> PageOut[EnterpriseOut]:
    """Visible enterprises, filterable by platform (home or member)."""
    page = svc.list_enterprises(db, who, platform_id=platform_id, limit=limit, offset=offset)
    items = [EnterpriseOut.model_validate(e) for e in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/enterprises", status_code=201)
def create_enterprise(body: EnterpriseIn, db: Db, who: Caller) -> EnterpriseOut:
    """Onboard an enterprise at a home platform you operate."""
    return EnterpriseOut.model_validate(svc.create_enterprise(db, who, **body.model_dump()))


@router.get("/enterprises/{enterprise_id}")
def get_enterprise(enterprise_id: int, db: Db, who: Caller) -> EnterpriseOut:
    """One enterprise."""
    return EnterpriseOut.model_validate(visible_enterprise(db, who, enterprise_id))


@router.patch("/enterprises/{enterprise_id}")
def update_enterprise(
    enterprise_id: int, body: EnterprisePatch, db: Db, who: Caller
) -> EnterpriseOut:
    """Change an enterprise's metadata."""
    change = svc.EnterpriseChange(**body.model_dump(exclude_unset=True))
    return EnterpriseOut.model_validate(svc.update_enterprise(db, who, enterprise_id, change))


@router.delete("/enterprises/{enterprise_id}", status_code=204)
def delete_enterprise(enterprise_id: int, db: Db, who: Caller) -> Response:
    """Offboard an enterprise with no products."""
    svc.delete_enterprise(db, who, enterprise_id)
    return Response(status_code=204)


@router.get("/memberships", tags=["memberships"])
def list_memberships(
    db: Db,
    who: Caller,
    enterprise_id: int | None = None,
    platform_id: int | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[MembershipOut]:
    """Visible memberships, filterable by enterprise and platform."""
    page = msvc.list_memberships(
        db, who, enterprise_id=enterprise_id, platform_id=platform_id, limit=limit, offset=offset
    )
    items = [MembershipOut.model_validate(m) for m in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/memberships", status_code=201, tags=["memberships"])
def create_membership(body: MembershipIn, db: Db, who: Caller) -> MembershipOut:
    """An enterprise joins a platform."""
    return MembershipOut.model_validate(msvc.create_membership(db, who, **body.model_dump()))


@router.get("/memberships/{membership_id}", tags=["memberships"])
def get_membership(membership_id: int, db: Db, who: Caller) -> MembershipOut:
    """One membership."""
    return MembershipOut.model_validate(msvc.get_membership(db, who, membership_id))


@router.delete("/memberships/{membership_id}", status_code=204, tags=["memberships"])
def delete_membership(membership_id: int, db: Db, who: Caller) -> Response:
    """End a membership."""
    msvc.delete_membership(db, who, membership_id)
    return Response(status_code=204)
