"""Registry tables (SQLAlchemy 2.x declarative). Alembic migrations own the schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Alarm",
    "ApiKey",
    "Base",
    "Command",
    "Device",
    "Enterprise",
    "Firmware",
    "Grant",
    "Membership",
    "OtaJob",
    "Platform",
    "Product",
    "RoleBinding",
    "Rule",
    "RuleTemplate",
    "Setting",
    "Shadow",
    "Template",
    "Topology",
    "User",
]

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime,
    }


class Setting(Base):
    """Deployment-wide settings kept in the registry (e.g. the base identifier prefix)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(512))


class Platform(Base):
    """A node of the 1+N tree. `path` is the materialised id path ``/1/5/``."""

    __tablename__ = "platforms"
    __table_args__ = (UniqueConstraint("parent_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    prefix: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str] = mapped_column(String(512), index=True, default="/")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Enterprise(Base):
    """The tenant."""

    __tablename__ = "enterprises"
    __table_args__ = (UniqueConstraint("home_platform_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    industry_code: Mapped[str] = mapped_column(String(5))
    region_code: Mapped[str] = mapped_column(String(6))
    home_platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    prefix: Mapped[str] = mapped_column(String(128), unique=True)
    retention_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Membership(Base):
    """An enterprise's membership in a platform other than its home."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("enterprise_id", "platform_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Grant(Base):
    """An enterprise's consent that a platform may read named data."""

    __tablename__ = "grants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    products: Mapped[list[Any]] = mapped_column(JSON)
    properties: Mapped[list[Any]] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Template(Base):
    """A thing-model template a platform publishes to its subtree."""

    __tablename__ = "templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64), default="")
    thing_model: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Product(Base):
    """A kind of device an enterprise owns, with its thing model (versioned)."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    product_key: Mapped[str] = mapped_column(String(32), unique=True)
    identifier: Mapped[str] = mapped_column(String(256), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    node_type: Mapped[str] = mapped_column(String(16), default="device")
    template_id: Mapped[int | None] = mapped_column(ForeignKey("templates.id"))
    thing_model: Mapped[dict[str, Any]] = mapped_column(JSON)
    thing_model_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Device(Base):
    """A device. Its secret is never stored: it is derived from the deployment's master
    key and `secret_salt`, so rotation means a new salt."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("product_id", "device_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    device_name: Mapped[str] = mapped_column(String(64))
    identifier: Mapped[str] = mapped_column(String(256), unique=True)
    nickname: Mapped[str] = mapped_column(String(128), default="")
    secret_salt: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_gateway: Mapped[bool] = mapped_column(Boolean, default=False)
    firmware_versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    access_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    provision_product_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Command(Base):
    """A downlink call (property set or service call) and how it ended."""

    __tablename__ = "commands"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    enterprise_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    identifier: Mapped[str] = mapped_column(String(64))
    call_type: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    timeout_ms: Mapped[int] = mapped_column(Integer)


class Shadow(Base):
    """A device's shadow: reported and desired state with per-key timestamps and a version."""

    __tablename__ = "shadows"
    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    reported: Mapped[dict[str, Any]] = mapped_column(JSON)
    desired: Mapped[dict[str, Any]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Topology(Base):
    """A sub-device behind a gateway (a sub-device has at most one gateway)."""

    __tablename__ = "topology"
    sub_device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    gateway_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Firmware(Base):
    """A firmware package of a product (one module, one version)."""

    __tablename__ = "firmware"
    __table_args__ = (UniqueConstraint("product_id", "module", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(Integer, index=True)
    module: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(512))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class OtaJob(Base):
    """One device's upgrade to one firmware: queued, pushed, in_progress, succeeded, failed."""

    __tablename__ = "ota_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    firmware_id: Mapped[int] = mapped_column(
        ForeignKey("firmware.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class User(Base):
    """A person who logs in; the password is an argon2id hash."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class RoleBinding(Base):
    """A role a user holds at a platform or at an enterprise (exactly one of the two)."""

    __tablename__ = "role_bindings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    platform_id: Mapped[int | None] = mapped_column(ForeignKey("platforms.id"), index=True)
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ApiKey(Base):
    """An API key or login session token of a user. Only a SHA-256 of the secret is kept;
    the secret has 256 random bits, so a slow hash adds nothing."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="api")
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_ms: Mapped[int | None] = mapped_column(BigInteger)


class RuleTemplate(Base):
    """A rule a platform publishes to its subtree; enterprises copy it into their own rules."""

    __tablename__ = "rule_templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    alarm: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actions: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Rule(Base):
    """An enterprise's rule over one product's devices (or one device): a condition, an
    optional alarm and actions. A rule that failed at run time has `enabled` false and says
    why in `disabled_reason`."""

    __tablename__ = "rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(Integer, index=True)
    template_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    alarm: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actions: Mapped[list[Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Alarm(Base):
    """One alarm of a rule on a device: active -> acknowledged -> cleared. Repeats while it
    is open add to `count` and move `last_ms`; cleared alarms stay as history. Times in ms."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(Integer, index=True)
    device_id: Mapped[int] = mapped_column(Integer, index=True)
    product_id: Mapped[int] = mapped_column(Integer)
    enterprise_id: Mapped[int] = mapped_column(Integer, index=True)
    rule_name: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    message_zh: Mapped[str] = mapped_column(Text, default="")
    message_en: Mapped[str] = mapped_column(Text, default="")
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    count: Mapped[int] = mapped_column(BigInteger)
    raised_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    last_ms: Mapped[int] = mapped_column(BigInteger)
    acknowledged_ms: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_by: Mapped[int | None] = mapped_column(Integer)
    cleared_ms: Mapped[int | None] = mapped_column(BigInteger)
    cleared_by: Mapped[int | None] = mapped_column(Integer)
    clear_reason: Mapped[str] = mapped_column(String(16), default="")
