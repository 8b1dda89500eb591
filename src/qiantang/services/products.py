"""Use cases on products and their thing models (enterprise data: only its users see it)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from qiantang.registry.tables import Device, Enterprise, Product
from qiantang.services.common import Page, paginate, utcnow
from qiantang.services.templates import get_template, template_visible_to_enterprise
from qiantang.services.tenancy import visible_enterprise
from qiantang.services.thing_models import model_from_request

__all__ = [
    "NODE_TYPES",
    "ProductChange",
    "create_product",
    "delete_product",
    "get_product",
    "list_products",
    "update_product",
]

NODE_TYPES = ("device", "gateway")
_KEY_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class ProductChange:
    """Fields a PATCH may change; a new model bumps the product's model version."""

    name: str | None = None
    description: str | None = None
    thing_model: Mapping[str, Any] | None = None
    tsl: Mapping[str, Any] | None = None


def _new_product_key(db: Session) -> str:
    while True:
        key = "a" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(10))
        if db.scalar(select(Product.id).where(Product.product_key == key)) is None:
            return key


def list_products(
    db: Session,
    who: Principal,
    *,
    enterprise_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Product]:
    """Products of the principal's enterprises, optionally of one."""
    stmt = select(Product).where(Product.enterprise_id.in_(list(who.enterprise_roles)))
    if enterprise_id is not None:
        stmt = stmt.where(Product.enterprise_id == enterprise_id)
    return paginate(db, stmt.order_by(Product.id), limit, offset)


def get_product(db: Session, who: Principal, product_id: int) -> Product:
    """One product of one of the principal's enterprises."""
    product = db.get(Product, product_id)
    if product is None or not who.is_member_of(product.enterprise_id):
        raise NotFound("product", product_id)
    return product


def create_product(
    db: Session,
    who: Principal,
    *,
    enterprise_id: int,
    name: str,
    description: str = "",
    node_type: str = "device",
    thing_model: Mapping[str, Any] | None = None,
    tsl: Mapping[str, Any] | None = None,
    template_id: int | None = None,
) -> Product:
    """A product with a model from our JSON, from TSL JSON, or copied from a template."""
    enterprise: Enterprise = visible_enterprise(db, who, enterprise_id)
    if not who.writes_in(enterprise.id):
        raise PermissionDenied("only the enterprise's admins and engineers may add products")
    if node_type not in NODE_TYPES:
        raise InvalidInput.of("node_type", "enum", "node_type is 'device' or 'gateway'")
    model = model_from_request(thing_model, tsl)
    if template_id is not None:
        if model is not None:
            raise InvalidInput.of("template_id", "one_of", "give a template or a model, not both")
        template = get_template(db, who, template_id)
        if not template_visible_to_enterprise(db, template, enterprise.id):
            raise InvalidInput.of("template_id", "visible", "template not published to you")
        model_json: dict[str, Any] = dict(template.thing_model)
    else:
        model_json = model.to_dict() if model is not None else {}
    key = _new_product_key(db)
    product = Product(
        enterprise_id=enterprise.id,
        product_key=key,
        identifier=f"{enterprise.prefix}/{key}",
        name=name,
        description=description,
        node_type=node_type,
        template_id=template_id,
        thing_model=model_json or {"properties": [], "events": [], "services": []},
        thing_model_version=1,
        created_at=utcnow(),
    )
    db.add(product)
    db.commit()
    return product


def _writable(db: Session, who: Principal, product_id: int) -> Product:
    product = get_product(db, who, product_id)
    if not who.writes_in(product.enterprise_id):
        raise PermissionDenied("viewers may not change products")
    return product


def update_product(db: Session, who: Principal, product_id: int, change: ProductChange) -> Product:
    """Rename, describe or replace the model (which bumps `thing_model_version`)."""
    product = _writable(db, who, product_id)
    if change.name is not None:
        product.name = change.name
    if change.description is not None:
        product.description = change.description
    model = model_from_request(change.thing_model, change.tsl)
    if model is not None:
        product.thing_model = model.to_dict()
        product.thing_model_version += 1
    db.commit()
    return product


def delete_product(db: Session, who: Principal, product_id: int) -> None:
    """Delete a product with no devices left."""
    product = _writable(db, who, product_id)
    if db.scalar(select(func.count()).where(Device.product_id == product.id)):
        raise Conflict.of("id", "not_empty", "the product still has devices")
    db.delete(product)
    db.commit()
