"""`/ingest`: HTTP ingest for scripts and gateways (per device, bulk JSON, line protocol)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from qiantang.api.deps import Caller, Db, RuntimeDep
from qiantang.api.problems import problem
from qiantang.domain.errors import AuthenticationFailed, FieldError, InvalidInput
from qiantang.protocols import alink
from qiantang.protocols.alink_topics import AlinkError
from qiantang.protocols.line_protocol import decode_lines
from qiantang.services.http_ingest import (
    BulkEntry,
    DeviceRef,
    IngestReport,
    decode_bulk,
    entries_from_lines,
    ingest_entries,
    writable_devices,
)

router = APIRouter(prefix="/ingest", tags=["ingest"])


def _answer(report: IngestReport) -> JSONResponse:
    body: dict[str, Any] = {
        "accepted": report.accepted,
        "rejected": report.rejected,
        "errors": report.errors,
    }
    if report.accepted == 0 and report.rejected:
        errors = [
            FieldError(str(e["field"]), str(e["rule"]), f"entry {e['index']}: {e['message']}")
            for e in report.errors
        ]
        return problem(422, "Invalid input", "no point was accepted", errors)
    return JSONResponse(body)


@router.post("/devices/{product_key}/{device_name}")
async def ingest_device(
    product_key: str,
    device_name: str,
    request: Request,
    rt: RuntimeDep,
    x_device_secret: Annotated[str, Header(description="the device secret")],
) -> JSONResponse:
    """One device posts properties as an Alink property-post body (``{"params": {...}}``),
    authenticated by its own secret."""
    live = rt.live()
    identity = await run_in_threadpool(
        live.authenticator.authenticate_secret, product_key, device_name, x_device_secret
    )
    if identity is None:
        raise AuthenticationFailed("unknown device or wrong secret")
    now = int(time.time() * 1000)
    try:
        post = alink.decode_property_post(await request.body(), now)
    except AlinkError as err:
        raise InvalidInput(err.as_field_error()) from err
    by_ts: dict[int, dict[str, Any]] = {}
    for reading in post.properties:
        by_ts.setdefault(reading.ts, {})[reading.identifier] = reading.value
    entries = [BulkEntry(product_key, device_name, props, ts) for ts, props in by_ts.items()]
    product_id = getattr(identity.extra, "product_id", 0)
    ref = DeviceRef(identity.device_id, product_id, identity.enterprise_id, True)
    report = await ingest_entries(live.core, entries, {(product_key, device_name): ref}, now)
    return _answer(report)


@router.post("/bulk")
async def ingest_bulk(request: Request, db: Db, who: Caller, rt: RuntimeDep) -> JSONResponse:
    """Many devices' readings in one JSON array of
    ``{"product_key", "device_name", "ts", "properties": {...}}``, with an enterprise key."""
    live = rt.live()
    entries = decode_bulk(await request.body())
    keys = {(e.product_key, e.device_name) for e in entries}
    devices = await run_in_threadpool(writable_devices, db, who, keys)
    report = await ingest_entries(live.core, entries, devices, int(time.time() * 1000))
    return _answer(report)


@router.post("/line")
async def ingest_line_protocol(
    request: Request,
    db: Db,
    who: Caller,
    rt: RuntimeDep,
    precision: Annotated[Literal["ns", "us", "ms", "s"], Query()] = "ns",
) -> JSONResponse:
    """InfluxDB line protocol: measurement = product key, tag ``device`` = device name,
    fields = properties; timestamps in `precision` (Telegraf-style clients can write)."""
    live = rt.live()
    now = int(time.time() * 1000)
    batch = decode_lines(await request.body(), precision, now_ms=now)
    entries = entries_from_lines(batch.points)
    keys = {(e.product_key, e.device_name) for e in entries}
    devices = await run_in_threadpool(writable_devices, db, who, keys)
    report = await ingest_entries(live.core, entries, devices, now, [p.line for p in batch.points])
    for line, error in batch.errors:
        report.refuse(line, error)
    return _answer(report)
