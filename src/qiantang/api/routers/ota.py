"""OTA over HTTP: upload firmware, create upgrade jobs, follow them, and the signed,
resumable (HTTP Range) download devices use."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from qiantang.api.deps import Caller, RuntimeDep

router = APIRouter(tags=["ota"])
Label = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]


class FirmwareOut(BaseModel):
    """A firmware package."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    product_id: int
    module: str
    version: str
    size: int
    sha256: str
    md5: str
    description: str
    created_at: datetime


class JobsIn(BaseModel):
    """Devices to upgrade (omit for every device of the product)."""

    model_config = ConfigDict(extra="forbid")
    device_ids: list[int] | None = Field(default=None, max_length=100_000)


class JobOut(BaseModel):
    """One device's upgrade."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    firmware_id: int
    device_id: int
    status: str
    progress: int
    message: str
    created_at: datetime
    updated_at: datetime


@router.post("/products/{product_id}/firmware", status_code=201)
async def upload_firmware(
    product_id: int,
    request: Request,
    who: Caller,
    rt: RuntimeDep,
    version: Annotated[Label, Query()],
    module: Annotated[Label, Query()] = "default",
    sha256: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{64}$")] = None,
    description: Annotated[str, Query(max_length=2000)] = "",
) -> FirmwareOut:
    """Upload a package as the raw request body; `sha256`, if given, is checked."""
    data = await request.body()
    firmware = await run_in_threadpool(
        lambda: rt.live().ota.upload(
            who,
            product_id,
            module=module,
            version=version,
            data=data,
            sha256=sha256,
            description=description,
        )
    )
    return FirmwareOut.model_validate(firmware)


@router.get("/products/{product_id}/firmware")
async def list_firmware(product_id: int, who: Caller, rt: RuntimeDep) -> list[FirmwareOut]:
    """A product's packages."""
    found = await run_in_threadpool(rt.live().ota.list_firmware, who, product_id)
    return [FirmwareOut.model_validate(f) for f in found]


@router.post("/firmware/{firmware_id}/jobs", status_code=201)
async def create_jobs(
    firmware_id: int, body: JobsIn, request: Request, who: Caller, rt: RuntimeDep
) -> list[JobOut]:
    """Upgrade devices: online ones are told now, the others when they next listen."""
    live = rt.live()
    base = str(request.base_url)
    jobs = await run_in_threadpool(live.ota.create_jobs, who, firmware_id, body.device_ids, base)
    online = [j.id for j in jobs if live.states.get(j.device_id).online]
    if online and live.ingress is not None:
        pushes = await run_in_threadpool(live.ota.pushes, None, online)
        for push in pushes:
            await live.ingress.publish(push.topic, push.payload, qos=1)
        await run_in_threadpool(live.ota.mark_pushed, [p.job_id for p in pushes])
        jobs = await run_in_threadpool(live.ota.jobs, who, firmware_id)
    return [JobOut.model_validate(j) for j in jobs]


@router.get("/firmware/{firmware_id}/jobs")
async def list_jobs(firmware_id: int, who: Caller, rt: RuntimeDep) -> list[JobOut]:
    """Every job of a package, with its status and progress."""
    jobs = await run_in_threadpool(rt.live().ota.jobs, who, firmware_id)
    return [JobOut.model_validate(j) for j in jobs]


@router.get("/ota/download/{firmware_id}")
async def download(
    firmware_id: int,
    rt: RuntimeDep,
    device: int,
    expires: int,
    token: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    """The package, for the device the signed URL names (Range requests resume)."""
    firmware = await run_in_threadpool(rt.live().ota.download, firmware_id, device, expires, token)
    return FileResponse(
        firmware.path,
        media_type="application/octet-stream",
        filename=f"{firmware.module}-{firmware.version}.bin",
    )
