"""`/resolve/{identifier}`: identifier resolution under the caller's access rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from qiantang.api.deps import Caller, Db
from qiantang.api.schemas import DeviceOut, EnterpriseOut, PlatformOut, ProductOut
from qiantang.services.resolve import resolve

router = APIRouter(tags=["resolve"])

_OUT: dict[str, Any] = {
    "platform": PlatformOut,
    "enterprise": EnterpriseOut,
    "product": ProductOut,
    "device": DeviceOut,
}


@router.get("/resolve/{identifier:path}")
def resolve_identifier(identifier: str, db: Db, who: Caller) -> dict[str, Any]:
    """The record an identifier names, its type, and its owners from the base down."""
    found = resolve(db, who, identifier)
    record = _OUT[found.type].model_validate(found.record).model_dump(mode="json")
    return {
        "identifier": found.identifier,
        "type": found.type,
        "record": record,
        "owners": [
            {"type": o.type, "id": o.id, "identifier": o.identifier, "name": o.name}
            for o in found.owners
        ],
    }
