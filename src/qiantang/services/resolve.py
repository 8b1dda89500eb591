"""Identifier resolution: an identifier to its record, type and owner chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import NotFound
from qiantang.domain.identifiers import parse_identifier
from qiantang.domain.platform import path_ids
from qiantang.registry.tables import Device, Enterprise, Platform, Product
from qiantang.services.devices import get_device
from qiantang.services.platforms import get_platform
from qiantang.services.products import get_product
from qiantang.services.tenancy import visible_enterprise

__all__ = ["Link", "Resolution", "resolve"]


@dataclass(frozen=True, slots=True)
class Link:
    """One owner in the chain, from the base down."""

    type: str
    id: int
    identifier: str
    name: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an identifier names, and who owns it."""

    identifier: str
    type: str
    record: Any
    owners: list[Link] = field(default_factory=list)


def _platform_chain(db: Session, path: str) -> list[Link]:
    ids = path_ids(path)
    rows = {p.id: p for p in db.scalars(select(Platform).where(Platform.id.in_(ids)))}
    return [Link("platform", i, rows[i].prefix, rows[i].name) for i in ids if i in rows]


def _enterprise_chain(db: Session, enterprise: Enterprise) -> list[Link]:
    home = db.get(Platform, enterprise.home_platform_id)
    chain = _platform_chain(db, home.path) if home else []
    return [*chain, Link("enterprise", enterprise.id, enterprise.prefix, enterprise.name)]


def resolve(db: Session, who: Principal, text: str) -> Resolution:
    """Resolve locally under the caller's access rules; unknown or unreachable -> NotFound."""
    ident = parse_identifier(text)
    canonical = str(ident)
    if not ident.suffix:
        platform = db.scalar(select(Platform).where(Platform.prefix == canonical))
        if platform is not None:
            platform = get_platform(db, who, platform.id)
            chain = _platform_chain(db, platform.path)[:-1]
            return Resolution(canonical, "platform", platform, chain)
        enterprise = db.scalar(select(Enterprise).where(Enterprise.prefix == canonical))
        if enterprise is not None:
            enterprise = visible_enterprise(db, who, enterprise.id)
            return Resolution(
                canonical, "enterprise", enterprise, _enterprise_chain(db, enterprise)[:-1]
            )
        raise NotFound("identifier", canonical)
    product = db.scalar(select(Product).where(Product.identifier == canonical))
    if product is not None:
        product = get_product(db, who, product.id)
        owner = db.get(Enterprise, product.enterprise_id)
        chain = _enterprise_chain(db, owner) if owner else []
        return Resolution(canonical, "product", product, chain)
    device = db.scalar(select(Device).where(Device.identifier == canonical))
    if device is not None:
        device = get_device(db, who, device.id)
        owner = db.get(Enterprise, device.enterprise_id)
        parent = db.get(Product, device.product_id)
        chain = _enterprise_chain(db, owner) if owner else []
        if parent is not None:
            chain.append(Link("product", parent.id, parent.identifier, parent.name))
        return Resolution(canonical, "device", device, chain)
    raise NotFound("identifier", canonical)
