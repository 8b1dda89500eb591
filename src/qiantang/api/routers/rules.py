"""Rules of an enterprise, rule templates of a platform, dry runs and action deliveries.

Every change is checked in full before it is stored (problem+json naming the field) and
then handed to the running rule engine, so it takes effect without a restart.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from qiantang.api.deps import Caller, Db, Runtime, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import PageOut
from qiantang.domain.errors import InvalidInput, NotFound
from qiantang.domain.rule_actions import parse_actions, public_actions
from qiantang.domain.thingmodel import ThingModel
from qiantang.registry.tables import Device, Product, Rule, RuleTemplate
from qiantang.services import rules as svc
from qiantang.services.rule_engine_dry_run import dry_run
from qiantang.services.rule_engine_rules import RuleDef
from qiantang.services.webhooks import WebhookSecrets

router = APIRouter(tags=["rules"])
DAY_MS = 86_400_000
MAX_DRY_RUN_DEVICES = 200


class RuleIn(BaseModel):
    """A rule (or template): a condition, an optional alarm and actions. See
    `qiantang.domain.rules` for the condition kinds; ``alarm`` may also be given as an
    ``{"type": "alarm", ...}`` entry of ``actions``."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=128)
    description: str | None = Field(default=None, max_length=2000)
    product_id: int | None = None
    device_id: int | None = None
    template_id: int | None = None
    condition: dict[str, Any] | None = None
    alarm: dict[str, Any] | None = None
    actions: list[Any] | None = None
    enabled: bool | None = None

    def as_input(self) -> svc.RuleInput:
        """The service's input."""
        return svc.RuleInput(**self.model_dump())


class RuleOut(BaseModel):
    """A stored rule; webhook secrets never come back."""

    id: int
    enterprise_id: int
    product_id: int
    device_id: int | None
    template_id: int | None
    name: str
    description: str
    condition: dict[str, Any]
    alarm: dict[str, Any] | None
    actions: list[dict[str, Any]]
    enabled: bool
    disabled_reason: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: Rule) -> RuleOut:
        """From a registry row."""
        actions = public_actions(parse_actions(rule.actions, stored=True, others={"alarm"}))
        return cls(
            id=rule.id,
            enterprise_id=rule.enterprise_id,
            product_id=rule.product_id,
            device_id=rule.device_id,
            template_id=rule.template_id,
            name=rule.name,
            description=rule.description,
            condition=rule.condition,
            alarm=rule.alarm,
            actions=actions,
            enabled=rule.enabled,
            disabled_reason=rule.disabled_reason,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


class RuleTemplateOut(BaseModel):
    """A published rule template."""

    id: int
    platform_id: int
    name: str
    description: str
    condition: dict[str, Any]
    alarm: dict[str, Any] | None
    actions: list[dict[str, Any]]
    created_at: datetime

    @classmethod
    def of(cls, t: RuleTemplate) -> RuleTemplateOut:
        """From a registry row."""
        actions = public_actions(parse_actions(t.actions, stored=True, others={"alarm"}))
        return cls(
            id=t.id,
            platform_id=t.platform_id,
            name=t.name,
            description=t.description,
            condition=t.condition,
            alarm=t.alarm,
            actions=actions,
            created_at=t.created_at,
        )


class DryRunIn(BaseModel):
    """The stored range to replay (ms, ``[start_ms, end_ms)``; default the last 24 h),
    optionally one device, optionally a draft condition or alarm instead of the stored."""

    model_config = ConfigDict(extra="forbid")
    start_ms: int | None = None
    end_ms: int | None = None
    device_id: int | None = None
    condition: dict[str, Any] | None = None
    alarm: dict[str, Any] | None = None


def _secrets(rt: Runtime) -> WebhookSecrets:
    return WebhookSecrets(rt.device_secrets)


def _notify(rt: Runtime, rule_id: int) -> None:
    engine = rt.telemetry.rules if rt.telemetry is not None else None
    if engine is not None:
        engine.rule_changed(rule_id)


@router.get("/enterprises/{enterprise_id}/rules")
def list_rules(
    enterprise_id: int,
    db: Db,
    who: Caller,
    product_id: int | None = None,
    device_id: int | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[RuleOut]:
    """The enterprise's rules."""
    page = svc.list_rules(
        db, who, enterprise_id, product_id=product_id, device_id=device_id, limit=limit,
        offset=offset,
    )  # fmt: skip
    return PageOut(
        items=[RuleOut.of(r) for r in page.items], total=page.total, limit=limit, offset=offset
    )


@router.post("/enterprises/{enterprise_id}/rules", status_code=201)
def create_rule(enterprise_id: int, body: RuleIn, db: Db, who: Caller, rt: RuntimeDep) -> RuleOut:
    """Check and store a rule; it runs at once."""
    rule = svc.create_rule(db, who, enterprise_id, body.as_input(), _secrets(rt))
    _notify(rt, rule.id)
    return RuleOut.of(rule)


@router.get("/enterprises/{enterprise_id}/rules/{rule_id}")
def read_rule(enterprise_id: int, rule_id: int, db: Db, who: Caller) -> RuleOut:
    """One rule (``enabled`` false with ``disabled_reason`` when it failed at run time)."""
    return RuleOut.of(svc.get_rule(db, who, enterprise_id, rule_id))


@router.patch("/enterprises/{enterprise_id}/rules/{rule_id}")
def update_rule(
    enterprise_id: int, rule_id: int, body: RuleIn, db: Db, who: Caller, rt: RuntimeDep
) -> RuleOut:
    """Change a rule (checked again in full)."""
    rule = svc.update_rule(db, who, enterprise_id, rule_id, body.as_input(), _secrets(rt))
    _notify(rt, rule.id)
    return RuleOut.of(rule)


@router.delete("/enterprises/{enterprise_id}/rules/{rule_id}", status_code=204)
def delete_rule(enterprise_id: int, rule_id: int, db: Db, who: Caller, rt: RuntimeDep) -> Response:
    """Delete a rule; its open alarms are cleared, its history stays."""
    svc.delete_rule(db, who, enterprise_id, rule_id)
    _notify(rt, rule_id)
    return Response(status_code=204)


@router.post("/enterprises/{enterprise_id}/rules/{rule_id}/enable")
def enable_rule(enterprise_id: int, rule_id: int, db: Db, who: Caller, rt: RuntimeDep) -> RuleOut:
    """Enable a rule (also one the engine disabled after a failure)."""
    rule = svc.set_rule_enabled(db, who, enterprise_id, rule_id, True)
    _notify(rt, rule.id)
    return RuleOut.of(rule)


@router.post("/enterprises/{enterprise_id}/rules/{rule_id}/disable")
def disable_rule(enterprise_id: int, rule_id: int, db: Db, who: Caller, rt: RuntimeDep) -> RuleOut:
    """Disable a rule."""
    rule = svc.set_rule_enabled(db, who, enterprise_id, rule_id, False)
    _notify(rt, rule.id)
    return RuleOut.of(rule)


@router.get("/enterprises/{enterprise_id}/rules/{rule_id}/deliveries")
def rule_deliveries(
    enterprise_id: int, rule_id: int, db: Db, who: Caller, rt: RuntimeDep
) -> dict[str, Any]:
    """The rule's latest action attempts (webhooks, commands, derived points), newest first."""
    svc.get_rule(db, who, enterprise_id, rule_id)
    engine = rt.live().rules
    actions = engine.actions if engine is not None else None
    items = actions.deliveries(rule_id) if actions is not None else []
    return {"items": [asdict(d) for d in items]}


# --- templates ---------------------------------------------------------------------------------
@router.get("/platforms/{platform_id}/rule-templates", tags=["rule templates"])
def list_rule_templates(
    platform_id: int,
    db: Db,
    who: Caller,
    inherited: bool = True,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[RuleTemplateOut]:
    """Rule templates that reach the platform: its own and (`inherited`) those of every
    platform above it."""
    page = svc.list_rule_templates(
        db, who, platform_id, inherited=inherited, limit=limit, offset=offset
    )
    items = [RuleTemplateOut.of(t) for t in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("/platforms/{platform_id}/rule-templates", status_code=201, tags=["rule templates"])
def create_rule_template(
    platform_id: int, body: RuleIn, db: Db, who: Caller, rt: RuntimeDep
) -> RuleTemplateOut:
    """Publish a rule template to the platform's subtree (its operators)."""
    template = svc.create_rule_template(db, who, platform_id, body.as_input(), _secrets(rt))
    return RuleTemplateOut.of(template)


@router.delete(
    "/platforms/{platform_id}/rule-templates/{template_id}",
    status_code=204,
    tags=["rule templates"],
)
def delete_rule_template(platform_id: int, template_id: int, db: Db, who: Caller) -> Response:
    """Withdraw a template (rules made from it keep their copy)."""
    svc.delete_rule_template(db, who, platform_id, template_id)
    return Response(status_code=204)


# --- dry run -----------------------------------------------------------------------------------
def _dry_run_scope(
    db: Db, who: Caller, rule_id: int, body: DryRunIn
) -> tuple[RuleDef, ThingModel, dict[int, dict[str, Any]]]:
    rule = svc.readable_rule(db, who, rule_id)
    product = db.get(Product, rule.product_id)
    if product is None:
        raise NotFound("product", rule.product_id)
    definition = RuleDef.of(rule)
    if body.condition is not None or body.alarm is not None:
        definition = RuleDef(
            definition.id, definition.enterprise_id, definition.product_id,
            definition.device_id, definition.name,
            body.condition if body.condition is not None else definition.condition,
            body.alarm if body.alarm is not None else definition.alarm,
            definition.actions, True,
        )  # fmt: skip
    stmt = select(Device).where(
        Device.product_id == rule.product_id, Device.enterprise_id == rule.enterprise_id
    )
    device_id = body.device_id if body.device_id is not None else rule.device_id
    if device_id is not None:
        stmt = stmt.where(Device.id == device_id)
    rows = db.scalars(stmt.order_by(Device.id).limit(MAX_DRY_RUN_DEVICES))
    devices: dict[int, dict[str, Any]] = {
        d.id: {
            "id": d.id,
            "name": d.device_name,
            "nickname": d.nickname,
            "identifier": d.identifier,
        }
        for d in rows
    }
    if device_id is not None and not devices:
        raise InvalidInput.of("device_id", "exists", "no such device of the rule's product")
    return definition, ThingModel.from_dict(product.thing_model), devices


@router.post("/rules/{rule_id}/dry-run")
async def dry_run_rule(
    rule_id: int, body: DryRunIn, db: Db, who: Caller, rt: RuntimeDep
) -> dict[str, Any]:
    """Replay stored data through the rule and answer the moments it would have raised,
    cleared or fired (nothing is raised or sent)."""
    end = body.end_ms if body.end_ms is not None else int(time.time() * 1000) + 1
    start = body.start_ms if body.start_ms is not None else end - DAY_MS
    if start >= end:
        raise InvalidInput.of("start_ms", "range", "start_ms must be before end_ms")
    definition, model, devices = await run_in_threadpool(_dry_run_scope, db, who, rule_id, body)
    result = await dry_run(rt.live().store, definition, model, devices, start, end)
    return {
        "rule_id": rule_id,
        "start_ms": start,
        "end_ms": end,
        "devices": len(devices),
        "points": result.points,
        "events": result.events,
        "truncated": result.truncated,
        "error": result.error or None,
        "moments": [
            {"device_id": m.device_id, "ts": m.ts, "transition": m.transition, "values": m.values}
            for m in result.moments
        ],
    }
