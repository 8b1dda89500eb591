"""The demo's rules: the base platform publishes rule templates, and every enterprise with
compressors or CNC machines makes its rules from them, so that alarms fire while the demo
runs (a compressor's growing bearing fault, a CNC tool wearing out; see
`qiantang.sim.catalog.build_machine` for the devices that are made to show them).

Idempotent like the rest of the seeding: templates by (platform, name), rules by
(enterprise, name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.registry.tables import Product, Rule, RuleTemplate
from qiantang.services.rules import RuleInput, create_rule, create_rule_template
from qiantang.services.security import DeviceSecrets
from qiantang.services.webhooks import WebhookSecrets

__all__ = ["RULES", "RuleSeed", "seed_rules"]


@dataclass(frozen=True, slots=True)
class RuleSeed:
    """A template published at the base platform and the rule each enterprise makes of it
    for its products of `kind`."""

    name: str
    kind: str
    description: str
    condition: dict[str, Any]
    alarm: dict[str, Any]


RULES: tuple[RuleSeed, ...] = (
    RuleSeed(
        "空压机轴承振动超限",
        "air_compressor",
        "振动烈度超过 ISO 10816-3 C/D 区界限 7.1 mm/s 持续 5 秒",
        {"kind": "expression", "expression": "vibration > 7.1", "for": "5s"},
        {
            "severity": "critical",
            "message": {
                "zh-CN": "轴承振动 {vibration} mm/s，超过 7.1 mm/s，"
                "轴承温度 {bearingTemperature} °C",
                "en": "Bearing vibration {vibration} mm/s above 7.1 mm/s, "
                "bearing at {bearingTemperature} °C",
            },
        },
    ),
    RuleSeed(
        "空压机轴承温度过高",
        "air_compressor",
        "主机轴承温度超过 85 °C",
        {"kind": "expression", "expression": "bearingTemperature > 85.0"},
        {
            "severity": "major",
            "message": {
                "zh-CN": "轴承温度 {bearingTemperature} °C，超过 85 °C",
                "en": "Bearing temperature {bearingTemperature} °C above 85 °C",
            },
        },
    ),
    RuleSeed(
        "刀具磨损预警",
        "cnc_machine",
        "刀具寿命用到 95% 时提醒换刀",
        {"kind": "expression", "expression": "toolWear >= 95.0"},
        {
            "severity": "major",
            "message": {
                "zh-CN": "{toolNumber} 号刀磨损 {toolWear}%，请准备换刀",
                "en": "Tool {toolNumber} worn to {toolWear} %: prepare a tool change",
            },
        },
    ),
    RuleSeed(
        "刀具寿命到期",
        "cnc_machine",
        "数控系统上报刀具寿命到期事件",
        {"kind": "event", "identifier": "toolLifeExpired"},
        {
            "severity": "minor",
            "message": {
                "zh-CN": "{toolNo} 号刀寿命到期（已用 {usedCount} 次）",
                "en": "Tool {toolNo} reached its life ({usedCount} uses)",
            },
        },
    ),
)


def _template(
    db: Session, operator: Principal, base_id: int, seed: RuleSeed, seal: WebhookSecrets
) -> int:
    found = db.scalar(
        select(RuleTemplate.id).where(
            RuleTemplate.platform_id == base_id, RuleTemplate.name == seed.name
        )
    )
    if found is not None:
        return found
    body = RuleInput(
        name=seed.name,
        description=seed.description,
        condition=seed.condition,
        alarm=seed.alarm,
        actions=[],
    )
    return create_rule_template(db, operator, base_id, body, seal).id


def seed_rules(
    db: Session,
    operator: Principal,
    base_id: int,
    admins: Mapping[str, Principal],
    products: Mapping[tuple[str, str], Product],
    enterprise_ids: Mapping[str, int],
    secrets: DeviceSecrets,
) -> int:
    """Publish the templates and make each enterprise's rules; returns how many were made."""
    seal = WebhookSecrets(secrets)
    made = 0
    for seed in RULES:
        template_id = _template(db, operator, base_id, seed, seal)
        for (enterprise, kind), product in products.items():
            if kind != seed.kind:
                continue
            enterprise_id = enterprise_ids[enterprise]
            exists = db.scalar(
                select(Rule.id).where(Rule.enterprise_id == enterprise_id, Rule.name == seed.name)
            )
            if exists is not None:
                continue
            body = RuleInput(product_id=product.id, template_id=template_id)
            create_rule(db, admins[enterprise], enterprise_id, body, seal)
            made += 1
    return made
