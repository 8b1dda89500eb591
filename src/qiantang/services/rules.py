"""Use cases on rules (an enterprise's) and rule templates (a platform's).

A rule is read by any member of its enterprise and changed by its admins and engineers;
anyone else gets 404. Every rule is checked before it is stored: the condition and alarm by
`qiantang.domain.rules` against the product's thing model, the actions by
`qiantang.domain.rule_actions` (webhook secrets sealed). A platform's operators publish rule
templates; an enterprise at or below the platform (home or member) makes a rule from one
with ``template_id``, which copies the template's condition, alarm and actions (checked
against the chosen product) - like products made from thing-model templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import FieldError, InvalidInput, NotFound, PermissionDenied
from qiantang.domain.platform import path_ids
from qiantang.domain.rule_actions import ActionSpec, check_against_model, parse_actions
from qiantang.domain.rules import RuleSpec, parse_rule
from qiantang.domain.thingmodel import ThingModel
from qiantang.domain.validation import compile_model
from qiantang.registry.tables import Device, Enterprise, Platform, Product, Rule, RuleTemplate
from qiantang.services.common import Page, paginate, referenced, utcnow
from qiantang.services.rule_actions import stored_actions
from qiantang.services.rule_engine_rules import model_names
from qiantang.services.tenancy import enterprise_paths
from qiantang.services.webhooks import WebhookSecrets

__all__ = [
    "RuleInput",
    "create_rule",
    "create_rule_template",
    "delete_rule",
    "delete_rule_template",
    "enterprise_platform_ids",
    "get_rule",
    "list_rule_templates",
    "list_rules",
    "readable_rule",
    "set_rule_enabled",
    "split_alarm",
    "update_rule",
]


@dataclass(frozen=True, slots=True)
class RuleInput:
    """A rule or template as a request gives it; None leaves a field as it is (PATCH)."""

    name: str | None = None
    description: str | None = None
    product_id: int | None = None
    device_id: int | None = None
    template_id: int | None = None
    condition: Mapping[str, Any] | None = None
    alarm: Mapping[str, Any] | None = None
    actions: Sequence[Any] | None = None
    enabled: bool | None = None


def split_alarm(
    alarm: Mapping[str, Any] | None, actions: Sequence[Any] | None
) -> tuple[Mapping[str, Any] | None, list[Any]]:
    """The alarm, also when given as an ``{"type": "alarm", ...}`` entry of the actions."""
    rest: list[Any] = []
    for item in actions or ():
        if isinstance(item, Mapping) and item.get("type") == "alarm":
            if alarm is not None:
                raise InvalidInput.of("actions", "one_alarm", "a rule raises at most one alarm")
            alarm = {k: v for k, v in item.items() if k != "type"}
        else:
            rest.append(item)
    return alarm, rest


def enterprise_platform_ids(db: Session, enterprise_id: int) -> set[int]:
    """Platforms at or above the enterprise's home and memberships (templates reach it)."""
    enterprise = db.get(Enterprise, enterprise_id)
    if enterprise is None:
        return set()
    return {pid for path in enterprise_paths(db, enterprise) for pid in path_ids(path)}


def _member(who: Principal, enterprise_id: int, write: bool) -> None:
    if not who.is_member_of(enterprise_id):
        raise NotFound("enterprise", enterprise_id)
    if write and not who.writes_in(enterprise_id):
        raise PermissionDenied("only the enterprise's admins and engineers may change rules")


def list_rules(
    db: Session,
    who: Principal,
    enterprise_id: int,
    *,
    product_id: int | None = None,
    device_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Rule]:
    """The enterprise's rules, optionally of one product or one device."""
    _member(who, enterprise_id, write=False)
    stmt = select(Rule).where(Rule.enterprise_id == enterprise_id).order_by(Rule.id)
    if product_id is not None:
        stmt = stmt.where(Rule.product_id == product_id)
    if device_id is not None:
        stmt = stmt.where(Rule.device_id == device_id)
    return paginate(db, stmt, limit, offset)


def readable_rule(db: Session, who: Principal, rule_id: int) -> Rule:
    """A rule of one of the principal's enterprises (404 otherwise)."""
    rule = db.get(Rule, rule_id)
    if rule is None or not who.is_member_of(rule.enterprise_id):
        raise NotFound("rule", rule_id)
    return rule


def get_rule(db: Session, who: Principal, enterprise_id: int, rule_id: int) -> Rule:
    """One rule of the enterprise."""
    _member(who, enterprise_id, write=False)
    rule = db.get(Rule, rule_id)
    if rule is None or rule.enterprise_id != enterprise_id:
        raise NotFound("rule", rule_id)
    return rule


def _target(db: Session, enterprise_id: int, body: RuleInput) -> tuple[Product, int | None]:
    """The product (and device) a rule watches, both of the enterprise."""
    product_id = body.product_id
    if body.device_id is not None:
        device = db.get(Device, body.device_id)
        if device is None or device.enterprise_id != enterprise_id:
            raise InvalidInput.of("device_id", "exists", f"no device with id {body.device_id}")
        if product_id is not None and product_id != device.product_id:
            raise InvalidInput.of("product_id", "match", "the device is of another product")
        product_id = device.product_id
    if product_id is None:
        raise InvalidInput.of("product_id", "required", "give product_id or device_id")
    product = db.get(Product, product_id)
    if product is None or product.enterprise_id != enterprise_id:
        raise InvalidInput.of("product_id", "exists", f"no product with id {product_id}")
    return product, body.device_id


def _checked(
    product: Product,
    condition: object,
    alarm: object,
    actions: Sequence[Any],
    stored: bool,
    secrets: WebhookSecrets,
) -> tuple[RuleSpec, list[dict[str, Any]]]:
    """Parse everything against the product's model; all broken rules in one error."""
    model = ThingModel.from_dict(product.thing_model)
    properties, events = model_names(model)
    errors: list[FieldError] = []
    spec: RuleSpec | None = None
    specs: list[ActionSpec] = []
    try:
        spec = parse_rule(condition, alarm, properties=properties, events=events)
    except InvalidInput as err:
        errors.extend(err.errors)
    reads = spec.condition.reads if spec is not None else ()
    try:
        specs = parse_actions(list(actions), stored=stored, others={"alarm"}, reads=reads)
        check_against_model(specs, compile_model(model))
    except InvalidInput as err:
        errors.extend(err.errors)
    if errors or spec is None:
        raise InvalidInput(errors)
    return spec, stored_actions(specs, secrets)


def _name(name: str | None) -> str:
    if name is None or not 1 <= len(name.strip()) <= 128:
        raise InvalidInput.of("name", "length", "a name of 1-128 characters")
    return name.strip()


def _template_for(db: Session, template_id: int, enterprise_id: int) -> RuleTemplate:
    template = db.get(RuleTemplate, template_id)
    if template is None or template.platform_id not in enterprise_platform_ids(db, enterprise_id):
        raise InvalidInput.of("template_id", "exists", f"no rule template with id {template_id}")
    return template


def create_rule(
    db: Session, who: Principal, enterprise_id: int, body: RuleInput, secrets: WebhookSecrets
) -> Rule:
    """Check and store a rule (from a template when `body.template_id` is given)."""
    _member(who, enterprise_id, write=True)
    stored = False
    if body.template_id is not None:
        template = _template_for(db, body.template_id, enterprise_id)
        body = replace(
            body,
            name=body.name or template.name,
            description=body.description if body.description is not None else template.description,
            condition=body.condition if body.condition is not None else template.condition,
            alarm=body.alarm if body.alarm is not None else template.alarm,
            actions=body.actions if body.actions is not None else template.actions,
        )
        stored = body.actions is template.actions
    name = _name(body.name)
    product, device_id = _target(db, enterprise_id, body)
    alarm, actions = split_alarm(body.alarm, body.actions)
    _spec, kept = _checked(product, body.condition, alarm, actions, stored, secrets)
    now = utcnow()
    rule = Rule(
        enterprise_id=enterprise_id,
        product_id=product.id,
        device_id=device_id,
        template_id=body.template_id,
        name=name,
        description=body.description or "",
        condition=dict(body.condition or {}),
        alarm=dict(alarm) if alarm is not None else None,
        actions=kept,
        enabled=True if body.enabled is None else body.enabled,
        disabled_reason="",
        created_at=now,
        updated_at=now,
    )
    db.add(rule)
    db.commit()
    return rule


def update_rule(
    db: Session,
    who: Principal,
    enterprise_id: int,
    rule_id: int,
    change: RuleInput,
    secrets: WebhookSecrets,
) -> Rule:
    """Change a rule; the whole result is checked again. New actions replace the old."""
    _member(who, enterprise_id, write=True)
    rule = get_rule(db, who, enterprise_id, rule_id)
    if change.product_id is not None or change.device_id is not None:
        raise InvalidInput.of("product_id", "immutable", "make a new rule for another target")
    product = db.get(Product, rule.product_id)
    if product is None:
        raise NotFound("product", rule.product_id)
    name = _name(change.name) if change.name is not None else rule.name
    condition = change.condition if change.condition is not None else rule.condition
    alarm_in = change.alarm if change.alarm is not None else rule.alarm
    new_actions = change.actions is not None
    alarm, actions = split_alarm(alarm_in, change.actions if new_actions else rule.actions)
    _spec, kept = _checked(product, condition, alarm, actions, not new_actions, secrets)
    rule.name, rule.condition = name, dict(condition)
    rule.alarm = dict(alarm) if alarm is not None else None
    rule.actions = kept
    if change.description is not None:
        rule.description = change.description
    if change.enabled is not None:
        rule.enabled = change.enabled
        rule.disabled_reason = ""
    rule.updated_at = utcnow()
    db.commit()
    return rule


def set_rule_enabled(
    db: Session, who: Principal, enterprise_id: int, rule_id: int, enabled: bool
) -> Rule:
    """Enable (which forgets a previous failure's reason) or disable a rule."""
    _member(who, enterprise_id, write=True)
    rule = get_rule(db, who, enterprise_id, rule_id)
    rule.enabled = enabled
    rule.disabled_reason = "" if enabled else "disabled by hand"
    rule.updated_at = utcnow()
    db.commit()
    return rule


def delete_rule(db: Session, who: Principal, enterprise_id: int, rule_id: int) -> None:
    """Delete a rule (its alarms stay as history)."""
    _member(who, enterprise_id, write=True)
    db.delete(get_rule(db, who, enterprise_id, rule_id))
    db.commit()


# --- templates ---------------------------------------------------------------------------------
def _platform(db: Session, who: Principal, platform_id: int) -> Platform:
    platform = db.get(Platform, platform_id)
    if platform is None:
        raise NotFound("platform", platform_id)
    return platform


def _sees_templates_of(db: Session, who: Principal, platform: Platform) -> bool:
    if who.observes(platform.path):
        return True
    return any(platform.id in enterprise_platform_ids(db, e) for e in who.enterprise_roles)


def list_rule_templates(
    db: Session,
    who: Principal,
    platform_id: int,
    *,
    inherited: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> Page[RuleTemplate]:
    """Templates that reach the platform: published there and, with `inherited`, at every
    platform above it (for its observers and the enterprises below)."""
    platform = _platform(db, who, platform_id)
    if not _sees_templates_of(db, who, platform):
        raise NotFound("platform", platform_id)
    ids = path_ids(platform.path) if inherited else [platform.id]
    stmt = select(RuleTemplate).where(RuleTemplate.platform_id.in_(ids))
    return paginate(db, stmt.order_by(RuleTemplate.id), limit, offset)


def create_rule_template(
    db: Session, who: Principal, platform_id: int, body: RuleInput, secrets: WebhookSecrets
) -> RuleTemplate:
    """Publish a rule template (operators of the platform or above). No product yet, so
    only what does not depend on a thing model is checked here."""
    platform = _platform(db, who, platform_id)
    if not who.operates(platform.path):
        if not _sees_templates_of(db, who, platform):
            raise NotFound("platform", platform_id)
        raise PermissionDenied("only an operator of the platform may publish rule templates")
    name = _name(body.name)
    alarm, actions = split_alarm(body.alarm, body.actions)
    spec = parse_rule(body.condition, alarm)
    specs = parse_actions(actions, others={"alarm"}, reads=spec.condition.reads)
    template = RuleTemplate(
        platform_id=platform.id,
        name=name,
        description=body.description or "",
        condition=dict(body.condition or {}),
        alarm=dict(alarm) if alarm is not None else None,
        actions=stored_actions(specs, secrets),
        created_at=utcnow(),
    )
    db.add(template)
    db.commit()
    return template


def delete_rule_template(db: Session, who: Principal, platform_id: int, template_id: int) -> None:
    """Withdraw a template; rules made from it keep their copy."""
    platform = _platform(db, who, platform_id)
    template = referenced(db, RuleTemplate, template_id, "template_id", "rule template")
    if template.platform_id != platform.id or not who.operates(platform.path):
        raise NotFound("rule template", template_id)
    db.delete(template)
    db.commit()
