"""Seed the demo province through the services, idempotently: every step looks for what a
previous run made (by name, credit code, username, device name) and makes only what is
missing, so a second `qiantang demo` on the same data directory reuses everything.

Each action runs as the principal who would do it for real: the base operator bootstraps,
creates the platforms, onboards the enterprises and publishes templates; each enterprise's
admin registers its products and devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal, Role
from qiantang.edge.health import GATEWAY_THING_MODEL
from qiantang.registry.tables import (
    Device,
    Enterprise,
    Membership,
    Platform,
    Product,
    Template,
    User,
)
from qiantang.services.admin import bootstrap, is_bootstrapped
from qiantang.services.auth import principal_of
from qiantang.services.devices import create_device
from qiantang.services.enterprises import create_enterprise
from qiantang.services.memberships import create_membership
from qiantang.services.platforms import create_platform
from qiantang.services.products import create_product
from qiantang.services.security import DeviceSecrets
from qiantang.services.templates import create_template
from qiantang.services.users import BindingSpec, create_user
from qiantang.sim.catalog import KINDS, load_tsl
from qiantang.sim.gateway_config import GatewayIdentity
from qiantang.sim.plan import DevicePlan, Front
from qiantang.sim.province import (
    BASE_NAME,
    BASE_PREFIX,
    DEMO_PASSWORD,
    GATEWAY_ENTERPRISE,
    PLATFORMS,
    USERS,
    EnterpriseSpec,
    UserSpec,
    allocate_devices,
    enterprises,
)

__all__ = ["GATEWAY_DEVICE", "Login", "SeedResult", "seed_province"]

GATEWAY_DEVICE = "GW-0001"
_GATEWAY_PRODUCT = "边缘网关"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Login:
    """A printed demo login."""

    username: str
    password: str
    role: str
    where: str


@dataclass(slots=True)
class SeedResult:
    """What the province consists of, and how much of it this run made."""

    base_id: int
    platform_ids: dict[str, int] = field(default_factory=dict)
    enterprise_ids: dict[str, int] = field(default_factory=dict)
    devices: list[DevicePlan] = field(default_factory=list)
    gateway: GatewayIdentity | None = None
    logins: list[Login] = field(default_factory=list)
    created: int = 0


class _Seeder:
    def __init__(self, db: Session, secrets: DeviceSecrets, progress: Progress) -> None:
        self.db, self.secrets, self.progress = db, secrets, progress
        self.result = SeedResult(base_id=0)
        self.operator: Principal | None = None
        self.admins: dict[str, Principal] = {}
        self.products: dict[tuple[str, str], Product] = {}

    @property
    def op(self) -> Principal:
        assert self.operator is not None
        return self.operator

    def _made(self) -> None:
        self.result.created += 1

    # --- the tree ----------------------------------------------------------------------------
    def base(self) -> None:
        db = self.db
        if not is_bootstrapped(db):
            bootstrap(
                db,
                prefix=BASE_PREFIX,
                platform_name=BASE_NAME,
                username=USERS[0].username,
                password=DEMO_PASSWORD,
            )
            db.commit()
            self._made()
        base = db.scalars(select(Platform).where(Platform.kind == "base")).one()
        self.result.base_id = base.id
        self.result.platform_ids["base"] = base.id
        user = db.scalars(select(User).where(User.username == USERS[0].username)).first()
        if user is None:
            raise RuntimeError(
                f"the data directory was bootstrapped without a {USERS[0].username!r} user; "
                "use a fresh --data-dir for the demo"
            )
        self.operator = principal_of(db, user)

    def platforms(self) -> None:
        ids = self.result.platform_ids
        for spec in PLATFORMS:
            parent = ids[spec.parent or "base"]
            found = self.db.scalar(
                select(Platform.id).where(Platform.parent_id == parent, Platform.name == spec.name)
            )
            if found is None:
                made = create_platform(
                    self.db,
                    self.op,
                    name=spec.name,
                    kind=spec.kind,
                    parent_id=parent,
                    description=spec.description,
                )
                found = made.id
                self._made()
            ids[spec.key] = found
        self.progress(f"platforms: 1 base + {len(PLATFORMS)} (industry, region, enterprise)")

    def enterprises(self) -> None:
        specs = enterprises()
        for spec in specs:
            self.result.enterprise_ids[spec.key] = self._enterprise(spec)
            for member in spec.members:
                self._membership(spec, member)
        self.progress(f"enterprises: {len(specs)} with GB 32100 credit codes, memberships")

    def _enterprise(self, spec: EnterpriseSpec) -> int:
        db = self.db
        found = db.scalar(select(Enterprise.id).where(Enterprise.credit_code == spec.credit_code))
        if found is not None:
            return found
        made = create_enterprise(
            db,
            self.op,
            name=spec.name,
            credit_code=spec.credit_code,
            industry_code=spec.industry_code,
            region_code=spec.region_code,
            home_platform_id=self.result.platform_ids[spec.home],
        )
        self._made()
        return made.id

    def _membership(self, spec: EnterpriseSpec, member: str) -> None:
        enterprise_id = self.result.enterprise_ids[spec.key]
        platform_id = self.result.platform_ids[member]
        clash = select(Membership.id).where(
            Membership.enterprise_id == enterprise_id, Membership.platform_id == platform_id
        )
        if self.db.scalar(clash) is None:
            create_membership(
                self.db, self.op, enterprise_id=enterprise_id, platform_id=platform_id
            )
            self._made()

    # --- people ------------------------------------------------------------------------------
    def users(self) -> None:
        named = {u.enterprise for u in USERS if u.role is Role.ADMIN}
        extra = [
            UserSpec(f"{key}-admin", f"{key} 管理员", Role.ADMIN, enterprise=key)
            for key in self.result.enterprise_ids
            if key not in named
        ]
        for spec in (*USERS[1:], *extra):
            user = self._user(spec)
            if spec.role is Role.ADMIN:
                self.admins[spec.enterprise] = principal_of(self.db, user)
        where = {**{p.key: p.name for p in PLATFORMS}, "base": BASE_NAME}
        names = {e.key: e.name for e in enterprises()}
        self.result.logins = [
            Login(
                u.username, DEMO_PASSWORD, str(u.role), where.get(u.platform) or names[u.enterprise]
            )
            for u in USERS
        ]
        self.progress(f"users: {len(USERS) - 1 + len(extra) + 1} (every role)")

    def _user(self, spec: UserSpec) -> User:
        found = self.db.scalars(select(User).where(User.username == spec.username)).first()
        if found is not None:
            return found
        if spec.platform:
            binding = BindingSpec(spec.role, platform_id=self.result.platform_ids[spec.platform])
        else:
            binding = BindingSpec(
                spec.role, enterprise_id=self.result.enterprise_ids[spec.enterprise]
            )
        user = create_user(
            self.db,
            self.op,
            username=spec.username,
            password=DEMO_PASSWORD,
            display_name=spec.display_name,
            binding=binding,
        )
        self._made()
        return user

    # --- catalogue ---------------------------------------------------------------------------
    def templates(self) -> None:
        base = self.result.base_id
        for kind in KINDS.values():
            found = self.db.scalar(
                select(Template.id).where(
                    Template.platform_id == base, Template.name == kind.product_name
                )
            )
            if found is None:
                create_template(
                    self.db,
                    self.op,
                    platform_id=base,
                    name=kind.product_name,
                    category=kind.kind,
                    tsl=load_tsl(kind.kind),
                )
                self._made()
        self.progress(f"templates: {len(KINDS)} thing models published at the base platform")

    def _product(self, enterprise: str, name: str, **create: Any) -> Product:
        enterprise_id = self.result.enterprise_ids[enterprise]
        found = self.db.scalars(
            select(Product).where(Product.enterprise_id == enterprise_id, Product.name == name)
        ).first()
        if found is not None:
            return found
        made = create_product(
            self.db, self.admins[enterprise], enterprise_id=enterprise_id, name=name, **create
        )
        self._made()
        return made

    def _device(self, enterprise: str, product: Product, device_name: str) -> str:
        found = self.db.scalars(
            select(Device).where(Device.product_id == product.id, Device.device_name == device_name)
        ).first()
        if found is not None:
            return self.secrets.secret(found.id, found.secret_salt)
        _, secret = create_device(
            self.db,
            self.admins[enterprise],
            self.secrets,
            product_id=product.id,
            device_name=device_name,
        )
        self._made()
        return secret

    def devices(self, n: int, seed: int) -> None:
        slots = allocate_devices(n, seed)
        for i, slot in enumerate(slots, 1):
            kind = KINDS[slot.kind]
            product = self._product(slot.enterprise, kind.product_name, tsl=load_tsl(kind.kind))
            self.products[(slot.enterprise, slot.kind)] = product
            secret = self._device(slot.enterprise, product, slot.device_name)
            front: Front = (
                "opcua" if slot.front == "opcua" else "modbus" if slot.front == "modbus" else "mqtt"
            )
            self.result.devices.append(
                DevicePlan(
                    kind=slot.kind,
                    product_key=product.product_key,
                    device_name=slot.device_name,
                    device_secret=secret,
                    seed=slot.seed,
                    front=front,
                    faulty=slot.faulty,
                    unit_id=slot.unit_id,
                )
            )
            if i % 50 == 0 or i == len(slots):
                self.progress(f"devices: {i}/{len(slots)}")
        gateway = self._product(
            GATEWAY_ENTERPRISE,
            _GATEWAY_PRODUCT,
            node_type="gateway",
            thing_model=GATEWAY_THING_MODEL,
        )
        secret = self._device(GATEWAY_ENTERPRISE, gateway, GATEWAY_DEVICE)
        self.result.gateway = GatewayIdentity(gateway.product_key, GATEWAY_DEVICE, secret)

    def rules(self) -> None:
        try:
            from qiantang.sim.seed_rules import RULES, seed_rules
        except ImportError as err:  # a platform built without the rules service
            self.progress(f"rules: skipped ({err})")
            return
        made = seed_rules(
            self.db,
            self.op,
            self.result.base_id,
            self.admins,
            self.products,
            self.result.enterprise_ids,
            self.secrets,
        )
        self.result.created += made
        self.progress(f"rules: {len(RULES)} templates at the base platform, rules made from them")


def seed_province(
    sessions: sessionmaker[Session],
    secrets: DeviceSecrets,
    *,
    devices: int,
    seed: int,
    progress: Progress = lambda _: None,
) -> SeedResult:
    """Create (or find) the whole demo province; `progress` gets a line per step."""
    with sessions() as db:
        seeder = _Seeder(db, secrets, progress)
        seeder.base()
        seeder.platforms()
        seeder.enterprises()
        seeder.users()
        seeder.templates()
        seeder.devices(devices, seed)
        seeder.rules()
        return seeder.result
