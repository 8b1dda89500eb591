"""Telemetry reads: latest state, raw ranges, downsampled buckets, events, fleet latest,
device state and message log. Registry checks run in a worker thread; store reads are
awaited on the event loop (the store keeps DuckDB on its own threads)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from qiantang.api.deps import Caller, Db, RuntimeDep
from qiantang.domain.errors import NotFound
from qiantang.ports.timeseries import bucket_width_ms
from qiantang.registry.tables import Device
from qiantang.services.telemetry_access import ReadScope, readable_device, readable_product

router = APIRouter(tags=["telemetry"])
DAY_MS = 86_400_000
Start = Annotated[
    int | None, Query(description="from (ms since epoch, inclusive); default end - 24 h")
]
End = Annotated[int | None, Query(description="to (ms since epoch, exclusive); default now")]


def _range(start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    end = end_ms if end_ms is not None else int(time.time() * 1000) + 1
    return (start_ms if start_ms is not None else end - DAY_MS), end


def _check_property(scope: ReadScope, prop: str, device_id: int) -> None:
    if not scope.allows(prop):
        raise NotFound("device property", f"{device_id}/{prop}")


@router.get("/devices/{device_id}/properties")
async def latest_properties(device_id: int, db: Db, who: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """The latest value of every property (the reported state)."""
    scope = await run_in_threadpool(readable_device, db, who, device_id)
    latest = await rt.live().store.latest(device_id)
    return {
        "device_id": device_id,
        "properties": {
            p: {"ts": s.ts, "value": s.value} for p, s in sorted(latest.items()) if scope.allows(p)
        },
    }


@router.get("/devices/{device_id}/telemetry")
async def raw_telemetry(
    device_id: int,
    db: Db,
    who: Caller,
    rt: RuntimeDep,
    property: str | None = None,
    start_ms: Start = None,
    end_ms: End = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Raw points in ``[start_ms, end_ms)``, oldest first, paged by `cursor`."""
    scope = await run_in_threadpool(readable_device, db, who, device_id)
    if property is not None:
        _check_property(scope, property, device_id)
    start, end = _range(start_ms, end_ms)
    page = await rt.live().store.query_raw(
        device_id, property, start, end, limit=limit, cursor=cursor
    )
    return {
        "points": [
            {"ts": p.ts, "property": p.property, "value": p.value}
            for p in page.points
            if scope.allows(p.property)
        ],
        "next_cursor": page.next_cursor,
    }


@router.get("/devices/{device_id}/telemetry/buckets")
async def downsampled(
    device_id: int,
    property: str,
    db: Db,
    who: Caller,
    rt: RuntimeDep,
    start_ms: Start = None,
    end_ms: End = None,
    max_points: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """Buckets (avg, min, max, first, last, count) of a width the server picks so the range
    gives at most `max_points`."""
    scope = await run_in_threadpool(readable_device, db, who, device_id)
    _check_property(scope, property, device_id)
    start, end = _range(start_ms, end_ms)
    buckets = await rt.live().store.downsample(device_id, property, start, end, max_points)
    return {
        "property": property,
        "bucket_ms": bucket_width_ms(start, end, max_points),
        "buckets": [
            {
                "ts": b.ts,
                "count": b.count,
                "avg": b.avg,
                "min": b.min,
                "max": b.max,
                "first": b.first,
                "last": b.last,
            }
            for b in buckets
        ],
    }


@router.get("/devices/{device_id}/events")
async def device_events(
    device_id: int,
    db: Db,
    who: Caller,
    rt: RuntimeDep,
    start_ms: Start = None,
    end_ms: End = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Events the device posted, newest first (enterprise users only)."""
    scope = await run_in_threadpool(readable_device, db, who, device_id)
    if not scope.member:
        raise NotFound("device", device_id)
    start, end = _range(start_ms, end_ms)
    events = await rt.live().store.query_events(device_id, start, end, limit)
    return {
        "events": [
            {"ts": e.ts, "identifier": e.identifier, "type": e.event_type, "output": e.output}
            for e in events
        ]
    }


@router.get("/devices/{device_id}/state")
async def device_state(device_id: int, db: Db, who: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """Online/offline, since when, last seen."""
    await run_in_threadpool(readable_device, db, who, device_id)
    state = rt.live().states.get(device_id)
    return {
        "device_id": device_id,
        "online": state.online,
        "since_ms": state.since_ms or None,
        "last_seen_ms": state.last_seen_ms or None,
    }


@router.get("/devices/{device_id}/message-log")
async def message_log(device_id: int, db: Db, who: Caller, rt: RuntimeDep) -> dict[str, Any]:
    """The last uplink messages with their outcome and reason (enterprise users only)."""
    scope = await run_in_threadpool(readable_device, db, who, device_id)
    if not scope.member:
        raise NotFound("device", device_id)
    entries = rt.live().message_log.entries(device_id)
    return {
        "entries": [
            {
                "ts": e.ts,
                "topic": e.topic,
                "code": e.code,
                "outcome": e.outcome,
                "reason": e.reason,
                "size": e.size,
            }
            for e in entries
        ]
    }


@router.get("/products/{product_id}/fleet-latest")
async def fleet_latest(
    product_id: int, property: str, db: Db, who: Caller, rt: RuntimeDep
) -> dict[str, Any]:
    """One property's latest value for every device of the product."""
    scope = await run_in_threadpool(readable_product, db, who, product_id)
    if not scope.allows(property):
        raise NotFound("product property", f"{product_id}/{property}")

    def device_ids() -> dict[int, str]:
        rows = db.execute(
            select(Device.id, Device.device_name).where(Device.product_id == product_id)
        )
        return {i: n for i, n in rows}

    names = await run_in_threadpool(device_ids)
    latest = await rt.live().store.fleet_latest(list(names), property)
    return {
        "property": property,
        "devices": [
            {"device_id": d, "device_name": names[d], "ts": s.ts, "value": s.value}
            for d, s in sorted(latest.items())
        ],
    }
