"""Alarms: filtered lists (enterprise, platform subtree, severity, status, time), one alarm,
and the hand steps of its lifecycle (acknowledge, clear)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from qiantang.api.deps import Caller, Db, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import PageOut
from qiantang.domain.errors import Unavailable
from qiantang.services import alarms as svc
from qiantang.services.rule_engine import RuleEngine

router = APIRouter(tags=["alarms"])


class AlarmOut(BaseModel):
    """An alarm: one per rule and device while open; `count` breaches since it was raised.
    Times are ms since the epoch."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    rule_id: int
    rule_name: str
    device_id: int
    product_id: int
    enterprise_id: int
    severity: str
    status: str
    message_zh: str
    message_en: str
    values: dict[str, Any]
    count: int
    raised_ms: int
    last_ms: int
    acknowledged_ms: int | None
    acknowledged_by: int | None
    cleared_ms: int | None
    cleared_by: int | None
    clear_reason: str


@router.get("/alarms")
def list_alarms(
    db: Db,
    who: Caller,
    enterprise_id: int | None = None,
    platform_id: int | None = None,
    device_id: int | None = None,
    rule_id: int | None = None,
    severity: str | None = None,
    status: str | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[AlarmOut]:
    """Alarms the caller sees, newest first. `status`: active, acknowledged, cleared or open
    (active or acknowledged); `start_ms`/`end_ms` bound the raise time."""
    f = svc.AlarmFilter(
        enterprise_id, platform_id, device_id, rule_id, severity, status, start_ms, end_ms
    )
    page = svc.list_alarms(db, who, f, limit=limit, offset=offset)
    items = [AlarmOut.model_validate(a) for a in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/alarms/{alarm_id}")
def read_alarm(alarm_id: int, db: Db, who: Caller) -> AlarmOut:
    """One alarm."""
    return AlarmOut.model_validate(svc.get_alarm(db, who, alarm_id))


def _engine(rt: RuntimeDep) -> RuleEngine:
    engine = rt.live().rules
    if engine is None:
        raise Unavailable("the rule engine is not running")
    return engine


@router.post("/alarms/{alarm_id}/acknowledge")
def acknowledge_alarm(alarm_id: int, db: Db, who: Caller, rt: RuntimeDep) -> AlarmOut:
    """Acknowledge an open alarm (it stays open until cleared)."""
    svc.alarm_for_change(db, who, alarm_id)
    engine = _engine(rt)
    engine.call(lambda: engine.acknowledge(alarm_id, who.user_id))
    db.expire_all()
    return AlarmOut.model_validate(svc.get_alarm(db, who, alarm_id))


@router.post("/alarms/{alarm_id}/clear")
def clear_alarm(alarm_id: int, db: Db, who: Caller, rt: RuntimeDep) -> AlarmOut:
    """Clear an open alarm by hand; the rule's next breach raises a new one."""
    svc.alarm_for_change(db, who, alarm_id)
    engine = _engine(rt)
    engine.call(lambda: engine.clear_by_hand(alarm_id, who.user_id))
    db.expire_all()
    return AlarmOut.model_validate(svc.get_alarm(db, who, alarm_id))
