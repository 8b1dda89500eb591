"""Use cases on thing-model templates, which a platform publishes to everything below it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import InvalidInput, NotFound, PermissionDenied
from qiantang.domain.platform import path_ids
from qiantang.registry.tables import Enterprise, Membership, Platform, Product, Template
from qiantang.services.common import Page, paginate, referenced, subtree_filter, utcnow
from qiantang.services.thing_models import model_from_request

__all__ = [
    "TemplateChange",
    "create_template",
    "delete_template",
    "get_template",
    "list_templates",
    "template_visible_to_enterprise",
    "update_template",
]


@dataclass(frozen=True, slots=True)
class TemplateChange:
    """Fields a PATCH may change; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    category: str | None = None
    thing_model: Mapping[str, Any] | None = None
    tsl: Mapping[str, Any] | None = None


def _enterprise_platform_paths(db: Session, enterprise_ids: list[int]) -> list[str]:
    homes = select(Platform.path).join(Enterprise, Enterprise.home_platform_id == Platform.id)
    members = select(Platform.path).join(Membership, Membership.platform_id == Platform.id)
    return [
        *db.scalars(homes.where(Enterprise.id.in_(enterprise_ids))),
        *db.scalars(members.where(Membership.enterprise_id.in_(enterprise_ids))),
    ]


def _visible_filter(db: Session, who: Principal) -> ColumnElement[bool]:
    """Templates of platforms at or above any node the principal stands on, or below a
    platform it observes."""
    standing = [*who.bound_paths.values()]
    standing += _enterprise_platform_paths(db, list(who.enterprise_roles))
    above = {pid for path in standing for pid in path_ids(path)}
    below = select(Platform.id).where(subtree_filter(who.observed_paths()))
    return or_(Template.platform_id.in_(above), Template.platform_id.in_(below))


def template_visible_to_enterprise(db: Session, template: Template, enterprise_id: int) -> bool:
    """Whether the template is published at or above the enterprise's home or memberships."""
    paths = _enterprise_platform_paths(db, [enterprise_id])
    return any(template.platform_id in path_ids(p) for p in paths)


def list_templates(
    db: Session,
    who: Principal,
    *,
    platform_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Template]:
    """Templates the principal sees, optionally only those published by `platform_id`."""
    stmt = select(Template).where(_visible_filter(db, who)).order_by(Template.id)
    if platform_id is not None:
        stmt = stmt.where(Template.platform_id == platform_id)
    return paginate(db, stmt, limit, offset)


def get_template(db: Session, who: Principal, template_id: int) -> Template:
    """One visible template."""
    stmt = select(Template).where(Template.id == template_id, _visible_filter(db, who))
    template = db.scalar(stmt)
    if template is None:
        raise NotFound("template", template_id)
    return template


def create_template(
    db: Session,
    who: Principal,
    *,
    platform_id: int,
    name: str,
    description: str = "",
    category: str = "",
    thing_model: Mapping[str, Any] | None = None,
    tsl: Mapping[str, Any] | None = None,
) -> Template:
    """Publish a template at a platform (its operators or those above)."""
    platform = referenced(db, Platform, platform_id, "platform_id", "platform")
    if not who.operates(platform.path):
        raise PermissionDenied("only an operator of the platform may publish templates")
    model = model_from_request(thing_model, tsl)
    if model is None:
        raise InvalidInput.of("thing_model", "required", "give thing_model or tsl")
    template = Template(
        platform_id=platform.id,
        name=name,
        description=description,
        category=category,
        thing_model=model.to_dict(),
        created_at=utcnow(),
    )
    db.add(template)
    db.commit()
    return template


def _editable(db: Session, who: Principal, template_id: int) -> Template:
    template = get_template(db, who, template_id)
    platform = db.get(Platform, template.platform_id)
    if platform is None or not who.operates(platform.path):
        raise PermissionDenied("only an operator of the publishing platform may change it")
    return template


def update_template(
    db: Session, who: Principal, template_id: int, change: TemplateChange
) -> Template:
    """Change a template; products made from it keep their own copy of the model."""
    template = _editable(db, who, template_id)
    for attr in ("name", "description", "category"):
        value = getattr(change, attr)
        if value is not None:
            setattr(template, attr, value)
    model = model_from_request(change.thing_model, change.tsl)
    if model is not None:
        template.thing_model = model.to_dict()
    db.commit()
    return template


def delete_template(db: Session, who: Principal, template_id: int) -> None:
    """Withdraw a template; products made from it keep their models."""
    template = _editable(db, who, template_id)
    for product in db.scalars(select(Product).where(Product.template_id == template.id)):
        product.template_id = None
    db.delete(template)
    db.commit()
