"""Devices a gateway announces by name (ThingsBoard gateways, Sparkplug B edge nodes): found
in the gateway's provisioning product or created there, and linked behind the gateway.

A device already behind another gateway is refused, never re-linked: one gateway must not
take over another's sub-devices by naming them. The caller validates the name (each protocol
has its own naming rule) and commits.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.registry.tables import Device, Product, Topology
from qiantang.services.common import utcnow
from qiantang.services.security import DeviceSecrets

__all__ = ["provision_behind"]

log = logging.getLogger(__name__)


def provision_behind(db: Session, gateway_id: int, name: str) -> tuple[Device, Product] | str:
    """The device `name` of the gateway's provisioning product, created if missing and linked
    behind the gateway; or why not (no provisioning product, behind another gateway)."""
    gateway = db.get(Device, gateway_id)
    product_id = gateway.provision_product_id if gateway is not None else None
    product = db.get(Product, product_id) if product_id is not None else None
    if gateway is None or product is None or product.enterprise_id != gateway.enterprise_id:
        return f"device {name!r} is not behind this gateway and it provisions none"
    device = db.scalar(
        select(Device).where(Device.product_id == product.id, Device.device_name == name)
    )
    if device is None:
        device = Device(
            enterprise_id=product.enterprise_id,
            product_id=product.id,
            device_name=name,
            identifier=f"{product.identifier}/{name}",
            nickname=name,
            secret_salt=DeviceSecrets.new_salt(),
            enabled=True,
            is_gateway=False,
            created_at=utcnow(),
        )
        db.add(device)
        db.flush()
        log.info("gateway %s provisioned device %r", gateway.device_name, name)
    else:
        link = db.get(Topology, device.id)
        if link is not None and link.gateway_id != gateway_id:
            return f"device {name!r} is behind another gateway"
    db.merge(Topology(sub_device_id=device.id, gateway_id=gateway_id, created_at=utcnow()))
    return device, product
