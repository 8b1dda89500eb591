"""What a live-feed client asked for and may see, and where each device belongs.

A client subscribes to one scope - a device, a product, an enterprise or a platform subtree.
`open_scope` checks it with the rules of the REST telemetry reads
(`qiantang.services.telemetry_access`): members of the enterprise see everything (events and
alarms included); operators and analysts of a platform see the properties an active grant of
the enterprise names, and the online/offline state of those devices; everyone else gets
`NotFound`, the same answer as for a scope that does not exist. The result is a snapshot
(`Visibility`); the WebSocket router takes a fresh one every minute, so revoked keys and grants
stop the stream.

`RegistryDirectory` answers, once per device, the enterprise, product and platforms (home and
memberships, with their ancestors) a device belongs to; the feed caches it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal
from qiantang.domain.errors import NotFound
from qiantang.domain.grant import ALL, grant_active
from qiantang.domain.platform import path_ids
from qiantang.registry.tables import Device, Enterprise, Grant, Membership, Platform, Product
from qiantang.services.common import utcnow
from qiantang.services.telemetry_access import readable_device, readable_product
from qiantang.services.tenancy import visible_enterprise

__all__ = [
    "STREAMS",
    "DeviceInfo",
    "GrantRule",
    "LiveScope",
    "RegistryDirectory",
    "ScopeKind",
    "Sight",
    "Visibility",
    "open_scope",
]

#: The kinds of frame a client may ask for.
STREAMS = frozenset({"telemetry", "state", "event", "alarm"})


class ScopeKind(StrEnum):
    """What a subscription covers."""

    DEVICE = "device"
    PRODUCT = "product"
    ENTERPRISE = "enterprise"
    PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Where a device belongs: `platform_ids` holds its enterprise's home and member
    platforms and all their ancestors."""

    device_id: int
    enterprise_id: int
    product_id: int
    product_key: str
    platform_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class Sight:
    """What one client sees of one product: `properties` None means every property;
    `member` clients also see events and alarms."""

    member: bool
    properties: frozenset[str] | None

    def allows(self, prop: str) -> bool:
        """Whether one property may be streamed."""
        return self.properties is None or prop in self.properties


MEMBER_SIGHT = Sight(True, None)


@dataclass(frozen=True, slots=True)
class GrantRule:
    """One active grant as the feed needs it: product keys (or ``*``) and properties
    (None: all)."""

    products: frozenset[str]
    properties: frozenset[str] | None

    def covers(self, product_key: str) -> bool:
        """Whether the grant names the product."""
        return ALL in self.products or product_key in self.products


@dataclass(frozen=True, slots=True)
class Visibility:
    """A snapshot of what a principal may stream: whole enterprises it belongs to, and the
    grants (by enterprise) of platforms it observes."""

    members: frozenset[int]
    grants: Mapping[int, tuple[GrantRule, ...]]

    def sight(self, info: DeviceInfo) -> Sight | None:
        """What may be seen of the device (None: nothing)."""
        if info.enterprise_id in self.members:
            return MEMBER_SIGHT
        covered: set[str] = set()
        found = False
        for rule in self.grants.get(info.enterprise_id, ()):
            if not rule.covers(info.product_key):
                continue
            if rule.properties is None:
                return Sight(False, None)
            found = True
            covered.update(rule.properties)
        return Sight(False, frozenset(covered)) if found else None


@dataclass(frozen=True, slots=True)
class LiveScope:
    """A checked subscription: the scope, what may be seen, and the streams asked for."""

    kind: ScopeKind
    id: int
    visibility: Visibility
    streams: frozenset[str] = STREAMS


def _grant_rules(
    db: Session, who: Principal, enterprise_id: int | None
) -> dict[int, list[GrantRule]]:
    """Active grants to platforms `who` observes, by enterprise (one enterprise or all)."""
    if not who.observed_paths():
        return {}
    stmt = select(Grant, Platform.path).join(Platform, Platform.id == Grant.platform_id)
    if enterprise_id is not None:
        stmt = stmt.where(Grant.enterprise_id == enterprise_id)
    now = utcnow()
    rules: dict[int, list[GrantRule]] = {}
    for grant, path in db.execute(stmt):
        if not who.observes(path) or not grant_active(grant.revoked_at, grant.expires_at, now):
            continue
        properties = None if not grant.properties or ALL in grant.properties else grant.properties
        rule = GrantRule(
            frozenset(str(p) for p in grant.products),
            None if properties is None else frozenset(str(p) for p in properties),
        )
        rules.setdefault(grant.enterprise_id, []).append(rule)
    return rules


def _visibility(members: Iterable[int], rules: Mapping[int, list[GrantRule]]) -> Visibility:
    return Visibility(frozenset(members), {e: tuple(r) for e, r in rules.items()})


def _restricted(
    enterprise_id: int, product_key: str, properties: frozenset[str] | None
) -> Visibility:
    rule = GrantRule(frozenset({product_key}), properties)
    return Visibility(frozenset(), {enterprise_id: (rule,)})


def open_scope(db: Session, who: Principal, kind: ScopeKind, scope_id: int) -> LiveScope:
    """Check a subscription; `NotFound` when the scope does not exist or `who` may not
    stream from it."""
    if kind is ScopeKind.DEVICE:
        read = readable_device(db, who, scope_id)
        if read.member:
            return LiveScope(kind, scope_id, _visibility([read.product.enterprise_id], {}))
        seen = _restricted(read.product.enterprise_id, read.product.product_key, read.properties)
        return LiveScope(kind, scope_id, seen)
    if kind is ScopeKind.PRODUCT:
        read = readable_product(db, who, scope_id)
        if read.member:
            return LiveScope(kind, scope_id, _visibility([read.product.enterprise_id], {}))
        seen = _restricted(read.product.enterprise_id, read.product.product_key, read.properties)
        return LiveScope(kind, scope_id, seen)
    if kind is ScopeKind.ENTERPRISE:
        visible_enterprise(db, who, scope_id)
        if who.is_member_of(scope_id):
            return LiveScope(kind, scope_id, _visibility([scope_id], {}))
        rules = _grant_rules(db, who, scope_id)
        if not rules:
            raise NotFound("enterprise", scope_id)
        return LiveScope(kind, scope_id, _visibility([], rules))
    platform = db.get(Platform, scope_id)
    if platform is None or not who.observes(platform.path):
        raise NotFound("platform", scope_id)
    members = who.enterprise_roles.keys()
    return LiveScope(kind, scope_id, _visibility(members, _grant_rules(db, who, None)))


class RegistryDirectory:
    """Resolves devices to their enterprise, product and platforms from the registry
    (blocking: the feed calls it in a worker thread)."""

    CHUNK = 500

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def resolve(self, device_ids: Collection[int]) -> dict[int, DeviceInfo]:
        """Known devices among `device_ids` (unknown ones are left out)."""
        ids = sorted(device_ids)
        found: dict[int, DeviceInfo] = {}
        with self._sessions() as db:
            for start in range(0, len(ids), self.CHUNK):
                found.update(self._chunk(db, ids[start : start + self.CHUNK]))
        return found

    def _chunk(self, db: Session, ids: list[int]) -> dict[int, DeviceInfo]:
        rows = db.execute(
            select(Device.id, Device.enterprise_id, Device.product_id, Product.product_key)
            .join(Product, Product.id == Device.product_id)
            .where(Device.id.in_(ids))
        ).all()
        enterprises = {row[1] for row in rows}
        platforms: dict[int, set[int]] = {e: set() for e in enterprises}
        homes = db.execute(
            select(Enterprise.id, Platform.path)
            .join(Platform, Platform.id == Enterprise.home_platform_id)
            .where(Enterprise.id.in_(enterprises))
        )
        joined = db.execute(
            select(Membership.enterprise_id, Platform.path)
            .join(Platform, Platform.id == Membership.platform_id)
            .where(Membership.enterprise_id.in_(enterprises))
        )
        for enterprise_id, path in [*homes, *joined]:
            platforms[enterprise_id].update(path_ids(path))
        return {
            device_id: DeviceInfo(
                device_id, enterprise_id, product_id, key, frozenset(platforms[enterprise_id])
            )
            for device_id, enterprise_id, product_id, key in rows
        }
