"""Indicators rolled up the platform tree.

A platform's figures cover its whole subtree, counting each enterprise once however many
platforms of the subtree it belongs to (home or member); products and devices are those of
the counted enterprises. `own` covers enterprises attached to the platform itself, and
`children` gives the same figures for each direct sub-platform.

Because an enterprise may belong to an industry and a region platform at once, the
children's figures can add up to more than the total. The `home` figures count an
enterprise only where its home platform is, so they partition the subtree: a platform's
total equals its own home figures plus the sum of its children's home figures, whenever
every counted enterprise has its home in the subtree (always so at the base).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import PermissionDenied
from qiantang.domain.platform import PlatformKind
from qiantang.registry.tables import Alarm, Device, Enterprise, Membership, Platform, Product
from qiantang.services.platforms import get_platform

__all__ = ["Figures", "Indicators", "platform_indicators"]


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts over a set of platforms."""

    platforms: dict[str, int]
    enterprises: int
    products: int
    devices: int
    device_ids: frozenset[int] = frozenset()
    alarms: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Indicators:
    """A platform's roll-up, its own share, and each child's roll-up."""

    platform_id: int
    total: Figures
    own: Figures
    own_home: Figures
    children: list[tuple[Platform, Figures, Figures]] = field(default_factory=list)
    """Each direct child with its figures and its home figures."""


def _figures(db: Session, platform_ids: object, below: object, *, members: bool = True) -> Figures:
    """Figures for enterprises attached to `platform_ids` (a select of platform ids): at
    home there, or (`members`) members of one of them; `below` selects the platforms
    counted as sub-platforms."""
    at_home = Enterprise.home_platform_id.in_(platform_ids)  # type: ignore[arg-type]
    if members:
        joined = select(Membership.enterprise_id).where(Membership.platform_id.in_(platform_ids))  # type: ignore[arg-type]
        enterprise_ids = select(Enterprise.id).where(or_(at_home, Enterprise.id.in_(joined)))
    else:
        enterprise_ids = select(Enterprise.id).where(at_home)
    rows = db.execute(
        select(Platform.kind, func.count())
        .where(Platform.id.in_(below))  # type: ignore[arg-type]
        .group_by(Platform.kind)
    )
    kinds = {kind: count for kind, count in rows}
    counts = {
        k.value: int(kinds.get(k.value, 0)) for k in PlatformKind if k is not PlatformKind.BASE
    }
    counts["total"] = sum(counts.values())
    return Figures(
        platforms=counts,
        enterprises=db.scalar(select(func.count()).select_from(enterprise_ids.subquery())) or 0,
        products=db.scalar(select(func.count()).where(Product.enterprise_id.in_(enterprise_ids)))
        or 0,
        devices=db.scalar(select(func.count()).where(Device.enterprise_id.in_(enterprise_ids)))
        or 0,
        device_ids=frozenset(
            db.scalars(select(Device.id).where(Device.enterprise_id.in_(enterprise_ids)))
        ),
        alarms=_open_alarms(db, enterprise_ids),
    )


def _open_alarms(db: Session, enterprise_ids: object) -> dict[str, int]:
    """Open (active or acknowledged) alarms by severity, with their total."""
    rows = db.execute(
        select(Alarm.severity, func.count())
        .where(Alarm.enterprise_id.in_(enterprise_ids), Alarm.status != "cleared")  # type: ignore[arg-type]
        .group_by(Alarm.severity)
    )
    counts = dict.fromkeys(("critical", "major", "minor", "warning", "info"), 0)
    counts.update({severity: int(count) for severity, count in rows})
    counts["total"] = sum(counts.values())
    return counts


def _subtree(platform: Platform) -> object:
    return select(Platform.id).where(Platform.path.like(f"{platform.path}%"))


def _strictly_below(platform: Platform) -> object:
    return select(Platform.id).where(
        Platform.path.like(f"{platform.path}%"), Platform.id != platform.id
    )


def platform_indicators(db: Session, who: Principal, platform_id: int) -> Indicators:
    """The roll-up for a platform (operators and analysts at or above it)."""
    platform = get_platform(db, who, platform_id)
    if not who.observes(platform.path):
        raise PermissionDenied("indicators are for the platform's operators and analysts")
    nothing = select(Platform.id).where(Platform.id == -1)
    total = _figures(db, _subtree(platform), _strictly_below(platform))
    itself = select(Platform.id).where(Platform.id == platform.id)
    own = _figures(db, itself, nothing)
    own_home = _figures(db, itself, nothing, members=False)
    children = [
        (
            child,
            _figures(db, _subtree(child), _strictly_below(child)),
            _figures(db, _subtree(child), _strictly_below(child), members=False),
        )
        for child in db.scalars(
            select(Platform).where(Platform.parent_id == platform.id).order_by(Platform.id)
        )
    ]
    return Indicators(platform.id, total, own, own_home, children)
