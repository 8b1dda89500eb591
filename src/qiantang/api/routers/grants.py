"""`/grants`: an enterprise's consent that a platform may read named data."""

from __future__ import annotations

from fastapi import APIRouter

from qiantang.api.deps import Caller, Db
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import GrantIn, GrantOut, GrantPatch, PageOut
from qiantang.domain.grant import grant_active
from qiantang.registry.tables import Grant
from qiantang.services import grants as svc
from qiantang.services.common import utcnow

router = APIRouter(prefix="/grants", tags=["grants"])


def _out(grant: Grant) -> GrantOut:
    out = GrantOut.model_validate(grant)
    out.active = grant_active(grant.revoked_at, grant.expires_at, utcnow())
    return out


@router.get("")
def list_grants(
    db: Db,
    who: Caller,
    enterprise_id: int | None = None,
    platform_id: int | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[GrantOut]:
    """Grants you gave or that were given to platforms you observe."""
    page = svc.list_grants(
        db, who, enterprise_id=enterprise_id, platform_id=platform_id, limit=limit, offset=offset
    )
    return PageOut(
        items=[_out(g) for g in page.items], total=page.total, limit=limit, offset=offset
    )


@router.post("", status_code=201)
def create_grant(body: GrantIn, db: Db, who: Caller) -> GrantOut:
    """Grant a platform read access to named products and properties."""
    return _out(svc.create_grant(db, who, **body.model_dump()))


@router.get("/{grant_id}")
def get_grant(grant_id: int, db: Db, who: Caller) -> GrantOut:
    """One grant."""
    return _out(svc.get_grant(db, who, grant_id))


@router.patch("/{grant_id}")
def update_grant(grant_id: int, body: GrantPatch, db: Db, who: Caller) -> GrantOut:
    """Change what a grant covers or when it expires."""
    change = svc.GrantChange(**body.model_dump(exclude_unset=True))
    return _out(svc.update_grant(db, who, grant_id, change))


@router.post("/{grant_id}/revoke")
def revoke_grant(grant_id: int, db: Db, who: Caller) -> GrantOut:
    """Revoke at once (the grant stays on record)."""
    return _out(svc.revoke_grant(db, who, grant_id))


@router.delete("/{grant_id}")
def delete_grant(grant_id: int, db: Db, who: Caller) -> GrantOut:
    """Same as revoke: consent records are kept for audit."""
    return _out(svc.revoke_grant(db, who, grant_id))
