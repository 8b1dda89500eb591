"""Who may read a device's telemetry: its enterprise's users, and the operators and analysts
of a platform the enterprise granted the device's product (and maybe only some properties)
to, while that grant is active. Everyone else gets 404."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import NotFound
from qiantang.domain.grant import ALL, grant_active, grant_covers
from qiantang.registry.tables import Device, Grant, Platform, Product
from qiantang.services.common import utcnow

__all__ = ["ReadScope", "readable_device", "readable_product"]


@dataclass(frozen=True, slots=True)
class ReadScope:
    """What may be read: `properties` None means every property."""

    product: Product
    device: Device | None
    properties: frozenset[str] | None
    member: bool

    def allows(self, prop: str) -> bool:
        """Whether one property may be read."""
        return self.properties is None or prop in self.properties


def _granted(db: Session, who: Principal, product: Product) -> frozenset[str] | None:
    """Properties granted to a platform `who` observes; raises NotFound if none is."""
    now = utcnow()
    covered: set[str] = set()
    found = False
    rows = db.execute(
        select(Grant, Platform.path)
        .join(Platform, Platform.id == Grant.platform_id)
        .where(Grant.enterprise_id == product.enterprise_id)
    )
    for grant, path in rows:
        if not who.observes(path) or not grant_active(grant.revoked_at, grant.expires_at, now):
            continue
        if not grant_covers(grant.products, grant.properties, product.product_key, None):
            continue
        found = True
        if not grant.properties or ALL in grant.properties:
            return None
        covered.update(grant.properties)
    if not found:
        raise NotFound("product", product.id)
    return frozenset(covered)


def readable_product(db: Session, who: Principal, product_id: int) -> ReadScope:
    """Read scope over a product's telemetry."""
    product = db.get(Product, product_id)
    if product is None:
        raise NotFound("product", product_id)
    if who.is_member_of(product.enterprise_id):
        return ReadScope(product, None, None, True)
    return ReadScope(product, None, _granted(db, who, product), False)


def readable_device(db: Session, who: Principal, device_id: int) -> ReadScope:
    """Read scope over one device's telemetry."""
    device = db.get(Device, device_id)
    if device is None:
        raise NotFound("device", device_id)
    product = db.get(Product, device.product_id)
    if product is None:
        raise NotFound("device", device_id)
    if who.is_member_of(device.enterprise_id):
        return ReadScope(product, device, None, True)
    try:
        properties = _granted(db, who, product)
    except NotFound as err:
        raise NotFound("device", device_id) from err
    return ReadScope(product, device, properties, False)
