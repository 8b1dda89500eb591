"""Downlink over HTTP: set properties, call services, read a device's command history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from qiantang.api.deps import Caller, Db, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import PageOut
from qiantang.services.commands import (
    PROPERTY_SET,
    SERVICE,
    CallRequest,
    command_history,
    get_command,
)

router = APIRouter(tags=["commands"])


class CallIn(BaseModel):
    """Parameters of a call. `wait`: answer once the call ended (sync services always wait)."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict)
    wait: bool = True
    timeout_s: float = Field(default=5.0, gt=0, le=300)


class CommandOut(BaseModel):
    """A call and how it ended (status pending, sent, replied, failed, timed_out, offline)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: int
    kind: str
    identifier: str
    call_type: str
    params: dict[str, Any]
    status: str
    code: int | None
    message: str
    output: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


@router.post("/devices/{device_id}/properties/set")
async def set_properties(device_id: int, body: CallIn, who: Caller, rt: RuntimeDep) -> CommandOut:
    """Set ``rw`` properties on the device (validated before anything is sent)."""
    request = CallRequest(device_id, PROPERTY_SET, "set", body.params, body.timeout_s)
    command = await rt.live().commands.invoke(who, request, body.wait)
    return CommandOut.model_validate(command)


@router.post("/devices/{device_id}/services/{service_id}")
async def call_service(
    device_id: int, service_id: str, body: CallIn, who: Caller, rt: RuntimeDep
) -> CommandOut:
    """Call a service (input validated against the thing model)."""
    request = CallRequest(device_id, SERVICE, service_id, body.params, body.timeout_s)
    command = await rt.live().commands.invoke(who, request, body.wait)
    return CommandOut.model_validate(command)


@router.get("/devices/{device_id}/commands")
def list_commands(
    device_id: int, db: Db, who: Caller, limit: Limit = 50, offset: Offset = 0
) -> PageOut[CommandOut]:
    """The device's calls, newest first."""
    page = command_history(db, who, device_id, limit=limit, offset=offset)
    items = [CommandOut.model_validate(c) for c in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/commands/{command_id}")
def read_command(command_id: int, db: Db, who: Caller) -> CommandOut:
    """One call (poll it after an async invoke)."""
    return CommandOut.model_validate(get_command(db, who, command_id))
