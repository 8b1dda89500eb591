"""`/devices/{id}/shadow`: read the shadow, set desired state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from qiantang.api.deps import Caller, RuntimeDep
from qiantang.registry.tables import Shadow

router = APIRouter(tags=["shadow"])


class DesiredIn(BaseModel):
    """Desired values (null removes a key); `version` must be newer than the shadow's."""

    model_config = ConfigDict(extra="forbid")
    desired: dict[str, Any] = Field(max_length=128)
    version: int | None = Field(default=None, ge=1)


class ShadowOut(BaseModel):
    """A device shadow."""

    device_id: int
    reported: dict[str, Any]
    desired: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    updated_at: datetime
    delivered: bool | None = None


def _out(shadow: Shadow, delivered: bool | None = None) -> ShadowOut:
    return ShadowOut(
        device_id=shadow.device_id,
        reported=dict(shadow.reported),
        desired=dict(shadow.desired),
        metadata=dict(shadow.metadata_),
        version=shadow.version,
        updated_at=shadow.updated_at,
        delivered=delivered,
    )


@router.get("/devices/{device_id}/shadow")
async def read_shadow(device_id: int, who: Caller, rt: RuntimeDep) -> ShadowOut:
    """Reported and desired state with their versions."""
    shadow = await run_in_threadpool(rt.live().shadows.read, who, device_id)
    return _out(shadow)


@router.put("/devices/{device_id}/shadow/desired")
async def set_desired(device_id: int, body: DesiredIn, who: Caller, rt: RuntimeDep) -> ShadowOut:
    """Set desired state; pushed now if the device is online, else when it reconnects
    (`delivered` says which)."""
    live = rt.live()
    shadow, topic, control = await run_in_threadpool(
        live.shadows.set_desired, who, device_id, body.desired, body.version
    )
    online = live.states.get(device_id).online
    route = live.thingsboard.route(device_id)
    if route is not None:  # ThingsBoard: shared attributes pushed as they change
        changes = {k: v for k, v in body.desired.items() if v is not None}
        topic, control = route.shared_attributes(changes)
        await live.thingsboard.send(route.client_id, topic, control)
    elif online and live.ingress is not None:
        await live.ingress.publish(topic, control, qos=1)
    return _out(shadow, delivered=online)
