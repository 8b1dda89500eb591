"""Reading alarms, and who may acknowledge or clear them.

An enterprise's members see its alarms; operators and analysts of a platform see the alarms
of the enterprises attached at or below it (home or member), like its indicators. Anyone
else gets 404. Only the enterprise's admins and engineers acknowledge or clear by hand (the
change itself goes through the rule engine, which owns open alarms).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import InvalidInput, NotFound, PermissionDenied
from qiantang.domain.rules import SEVERITIES
from qiantang.registry.tables import Alarm, Enterprise, Membership, Platform
from qiantang.services.common import Page, paginate, subtree_filter
from qiantang.services.tenancy import visible_enterprises_filter

__all__ = ["STATUSES", "AlarmFilter", "alarm_for_change", "get_alarm", "list_alarms"]

STATUSES = ("active", "acknowledged", "cleared", "open")


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """List filters; `status` ``open`` means active or acknowledged. Times are ms on the
    raise time, ``[start_ms, end_ms)``."""

    enterprise_id: int | None = None
    platform_id: int | None = None
    device_id: int | None = None
    rule_id: int | None = None
    severity: str | None = None
    status: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None


def _visible(who: Principal) -> ColumnElement[bool]:
    enterprises = select(Enterprise.id).where(visible_enterprises_filter(who))
    return Alarm.enterprise_id.in_(enterprises)


def _in_subtree(db: Session, who: Principal, platform_id: int) -> ColumnElement[bool]:
    platform = db.get(Platform, platform_id)
    if platform is None or not who.observes(platform.path):
        raise NotFound("platform", platform_id)
    below = select(Platform.id).where(subtree_filter([platform.path]))
    members = select(Membership.enterprise_id).where(Membership.platform_id.in_(below))
    enterprises = select(Enterprise.id).where(
        or_(Enterprise.home_platform_id.in_(below), Enterprise.id.in_(members))
    )
    return Alarm.enterprise_id.in_(enterprises)


def _check(f: AlarmFilter) -> None:
    if f.severity is not None and f.severity not in SEVERITIES:
        raise InvalidInput.of("severity", "enum", f"one of {', '.join(SEVERITIES)}")
    if f.status is not None and f.status not in STATUSES:
        raise InvalidInput.of("status", "enum", f"one of {', '.join(STATUSES)}")
    if f.start_ms is not None and f.end_ms is not None and f.start_ms >= f.end_ms:
        raise InvalidInput.of("start_ms", "range", "start_ms must be before end_ms")


def list_alarms(
    db: Session, who: Principal, f: AlarmFilter, *, limit: int = 50, offset: int = 0
) -> Page[Alarm]:
    """Alarms the principal sees, newest raise first."""
    _check(f)
    stmt = select(Alarm).where(_visible(who))
    if f.enterprise_id is not None:
        stmt = stmt.where(Alarm.enterprise_id == f.enterprise_id)
    if f.platform_id is not None:
        stmt = stmt.where(_in_subtree(db, who, f.platform_id))
    for column, value in (
        (Alarm.device_id, f.device_id),
        (Alarm.rule_id, f.rule_id),
        (Alarm.severity, f.severity),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.status == "open":
        stmt = stmt.where(Alarm.status != "cleared")
    elif f.status is not None:
        stmt = stmt.where(Alarm.status == f.status)
    if f.start_ms is not None:
        stmt = stmt.where(Alarm.raised_ms >= f.start_ms)
    if f.end_ms is not None:
        stmt = stmt.where(Alarm.raised_ms < f.end_ms)
    return paginate(db, stmt.order_by(Alarm.raised_ms.desc(), Alarm.id.desc()), limit, offset)


def get_alarm(db: Session, who: Principal, alarm_id: int) -> Alarm:
    """One visible alarm."""
    alarm = db.scalar(select(Alarm).where(Alarm.id == alarm_id, _visible(who)))
    if alarm is None:
        raise NotFound("alarm", alarm_id)
    return alarm


def alarm_for_change(db: Session, who: Principal, alarm_id: int) -> Alarm:
    """An alarm the principal may acknowledge or clear (the enterprise's writers)."""
    alarm = db.get(Alarm, alarm_id)
    if alarm is None or not who.is_member_of(alarm.enterprise_id):
        get_alarm(db, who, alarm_id)  # 404 unless a platform observer sees it
        raise PermissionDenied("only the enterprise's admins and engineers handle alarms")
    if not who.writes_in(alarm.enterprise_id):
        raise PermissionDenied("only the enterprise's admins and engineers handle alarms")
    return alarm
