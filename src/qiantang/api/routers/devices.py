"""`/devices`: registration, secrets (shown once), enable/disable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from qiantang.api.deps import Caller, Db, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import DeviceCreated, DeviceIn, DeviceOut, DevicePatch, PageOut
from qiantang.registry.tables import Device, Product
from qiantang.services import devices as svc

router = APIRouter(prefix="/devices", tags=["devices"])


def _with_secret(db: Db, device: Device, secret: str) -> DeviceCreated:
    product = db.get(Product, device.product_id)
    base = DeviceOut.model_validate(device).model_dump()
    key = product.product_key if product else ""
    return DeviceCreated(**base, product_key=key, device_secret=secret)


@router.get("")
def list_devices(
    db: Db,
    who: Caller,
    product_id: int | None = None,
    enterprise_id: int | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[DeviceOut]:
    """Your enterprises' devices, filterable by product and enterprise."""
    page = svc.list_devices(
        db, who, product_id=product_id, enterprise_id=enterprise_id, limit=limit, offset=offset
    )
    items = [DeviceOut.model_validate(d) for d in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("", status_code=201)
def create_device(body: DeviceIn, db: Db, who: Caller, rt: RuntimeDep) -> DeviceCreated:
    """Register a device; the response carries its secret, shown this once."""
    device, secret = svc.create_device(db, who, rt.device_secrets, **body.model_dump())
    return _with_secret(db, device, secret)


@router.get("/{device_id}")
def get_device(device_id: int, db: Db, who: Caller) -> DeviceOut:
    """One device."""
    return DeviceOut.model_validate(svc.get_device(db, who, device_id))


@router.patch("/{device_id}")
def update_device(device_id: int, body: DevicePatch, db: Db, who: Caller) -> DeviceOut:
    """Rename, enable or disable a device."""
    change = svc.DeviceChange(**body.model_dump(exclude_unset=True))
    return DeviceOut.model_validate(svc.update_device(db, who, device_id, change))


@router.post("/{device_id}/secret")
def rotate_secret(device_id: int, db: Db, who: Caller, rt: RuntimeDep) -> DeviceCreated:
    """A new secret, shown this once; the old one stops working."""
    device, secret = svc.rotate_secret(db, who, rt.device_secrets, device_id)
    return _with_secret(db, device, secret)


@router.post("/{device_id}/access-token")
def issue_access_token(device_id: int, db: Db, who: Caller) -> dict[str, Any]:
    """A ThingsBoard-style access token (the MQTT username), shown this once."""
    device, token = svc.issue_access_token(db, who, device_id)
    return {"device_id": device.id, "access_token": token}


@router.delete("/{device_id}", status_code=204)
def delete_device(device_id: int, db: Db, who: Caller) -> Response:
    """Delete a device."""
    svc.delete_device(db, who, device_id)
    return Response(status_code=204)
