"""Use cases on devices. A device's secret is shown at creation and on rotation only."""

from __future__ import annotations

import hashlib
import re
import secrets as secrets_module
import string
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from qiantang.registry.tables import Device, Product
from qiantang.services.common import Page, paginate, utcnow
from qiantang.services.products import get_product
from qiantang.services.security import DeviceSecrets

__all__ = [
    "DeviceChange",
    "create_device",
    "delete_device",
    "get_device",
    "issue_access_token",
    "list_devices",
    "rotate_secret",
    "update_device",
    "validate_device_name",
]

_DEVICE_NAME = re.compile(r"^[A-Za-z0-9_\-@.:]{4,32}$")
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """Fields a PATCH may change; None leaves a field as it is. `provision_product_id`
    (gateways): the product unknown devices announced by the gateway are created in;
    0 switches auto-provisioning off."""

    nickname: str | None = None
    enabled: bool | None = None
    provision_product_id: int | None = None


def validate_device_name(name: str, field: str = "device_name") -> str:
    """Alibaba's rule: 4-32 letters, digits and ``_-@.:``."""
    if not _DEVICE_NAME.match(name):
        raise InvalidInput.of(
            field, "pattern", "a device name is 4-32 letters, digits or the characters _-@.:"
        )
    return name


def list_devices(
    db: Session,
    who: Principal,
    *,
    product_id: int | None = None,
    enterprise_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Device]:
    """Devices of the principal's enterprises, filtered by product or enterprise."""
    stmt = select(Device).where(Device.enterprise_id.in_(list(who.enterprise_roles)))
    if product_id is not None:
        stmt = stmt.where(Device.product_id == product_id)
    if enterprise_id is not None:
        stmt = stmt.where(Device.enterprise_id == enterprise_id)
    return paginate(db, stmt.order_by(Device.id), limit, offset)


def get_device(db: Session, who: Principal, device_id: int) -> Device:
    """One device of one of the principal's enterprises."""
    device = db.get(Device, device_id)
    if device is None or not who.is_member_of(device.enterprise_id):
        raise NotFound("device", device_id)
    return device


def create_device(
    db: Session,
    who: Principal,
    secrets: DeviceSecrets,
    *,
    product_id: int,
    device_name: str,
    nickname: str = "",
) -> tuple[Device, str]:
    """Register a device; returns it with its secret (the only time the secret is shown)."""
    try:
        product: Product = get_product(db, who, product_id)
    except NotFound as err:
        raise InvalidInput.of("product_id", "exists", f"no product with id {product_id}") from err
    if not who.writes_in(product.enterprise_id):
        raise PermissionDenied("viewers may not register devices")
    validate_device_name(device_name)
    clash = select(Device.id).where(
        Device.product_id == product.id, Device.device_name == device_name
    )
    if db.scalar(clash):
        raise Conflict.of("device_name", "unique", "the product already has this device name")
    device = Device(
        enterprise_id=product.enterprise_id,
        product_id=product.id,
        device_name=device_name,
        identifier=f"{product.identifier}/{device_name}",
        nickname=nickname,
        secret_salt=DeviceSecrets.new_salt(),
        enabled=True,
        is_gateway=product.node_type == "gateway",
        created_at=utcnow(),
    )
    db.add(device)
    db.commit()
    return device, secrets.secret(device.id, device.secret_salt)


def _writable(db: Session, who: Principal, device_id: int) -> Device:
    device = get_device(db, who, device_id)
    if not who.writes_in(device.enterprise_id):
        raise PermissionDenied("viewers may not change devices")
    return device


def update_device(db: Session, who: Principal, device_id: int, change: DeviceChange) -> Device:
    """Rename or enable/disable a device."""
    device = _writable(db, who, device_id)
    if change.nickname is not None:
        device.nickname = change.nickname
    if change.enabled is not None:
        device.enabled = change.enabled
    if change.provision_product_id is not None:
        device.provision_product_id = _provision_product(db, device, change.provision_product_id)
    db.commit()
    return device


def _provision_product(db: Session, device: Device, product_id: int) -> int | None:
    if product_id == 0:
        return None
    if not device.is_gateway:
        raise InvalidInput.of("provision_product_id", "gateway", "only gateways provision devices")
    product = db.get(Product, product_id)
    if product is None or product.enterprise_id != device.enterprise_id:
        raise InvalidInput.of("provision_product_id", "exists", "no such product of yours")
    return product.id


def issue_access_token(db: Session, who: Principal, device_id: int) -> tuple[Device, str]:
    """A new access token (ThingsBoard-style MQTT username), shown once; the old one stops
    working. Only its SHA-256 is kept: the token has 160 random bits."""
    device = _writable(db, who, device_id)
    token = token_urlsafe_alnum(20)
    device.access_token_hash = hashlib.sha256(token.encode()).hexdigest()
    db.commit()
    return device, token


def token_urlsafe_alnum(length: int) -> str:
    """Random letters and digits (tokens travel as MQTT usernames)."""
    return "".join(secrets_module.choice(_ALNUM) for _ in range(length))


def rotate_secret(
    db: Session, who: Principal, secrets: DeviceSecrets, device_id: int
) -> tuple[Device, str]:
    """A new secret; the old one stops working at once."""
    device = _writable(db, who, device_id)
    device.secret_salt = DeviceSecrets.new_salt()
    db.commit()
    return device, secrets.secret(device.id, device.secret_salt)


def delete_device(db: Session, who: Principal, device_id: int) -> None:
    """Delete a device (its telemetry follows the enterprise's retention)."""
    device = _writable(db, who, device_id)
    db.delete(device)
    db.commit()
