"""`/platforms`: the 1+N tree and its indicators."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from qiantang.api.deps import Caller, Db, Runtime, RuntimeDep
from qiantang.api.routers.paging import Limit, Offset
from qiantang.api.schemas import PageOut, PlatformIn, PlatformOut, PlatformPatch
from qiantang.domain.platform import PlatformKind
from qiantang.services import indicators as ind
from qiantang.services import platforms as svc

router = APIRouter(prefix="/platforms", tags=["platforms"])


@router.get("")
def list_platforms(
    db: Db,
    who: Caller,
    parent_id: int | None = None,
    kind: PlatformKind | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PageOut[PlatformOut]:
    """Platforms, filterable by parent and kind."""
    page = svc.list_platforms(db, who, parent_id=parent_id, kind=kind, limit=limit, offset=offset)
    items = [PlatformOut.model_validate(p) for p in page.items]
    return PageOut(items=items, total=page.total, limit=limit, offset=offset)


@router.post("", status_code=201)
def create_platform(body: PlatformIn, db: Db, who: Caller) -> PlatformOut:
    """Add a platform under a parent you operate."""
    platform = svc.create_platform(db, who, **body.model_dump())
    return PlatformOut.model_validate(platform)


@router.get("/{platform_id}")
def get_platform(platform_id: int, db: Db, who: Caller) -> PlatformOut:
    """One platform."""
    return PlatformOut.model_validate(svc.get_platform(db, who, platform_id))


@router.patch("/{platform_id}")
def update_platform(platform_id: int, body: PlatformPatch, db: Db, who: Caller) -> PlatformOut:
    """Rename or move a platform."""
    change = svc.PlatformChange(**body.model_dump(exclude_unset=True))
    return PlatformOut.model_validate(svc.update_platform(db, who, platform_id, change))


@router.delete("/{platform_id}", status_code=204)
def delete_platform(platform_id: int, db: Db, who: Caller) -> Response:
    """Delete an empty platform."""
    svc.delete_platform(db, who, platform_id)
    return Response(status_code=204)


async def _figures(f: ind.Figures, rt: Runtime, day_start_ms: int) -> dict[str, Any]:
    live = rt.telemetry
    online = len(f.device_ids & live.states.online_ids()) if live else 0
    points = await live.store.count_points(sorted(f.device_ids), day_start_ms) if live else 0
    return {
        "platforms": f.platforms,
        "enterprises": f.enterprises,
        "products": f.products,
        "devices": f.devices,
        "devices_online": online,
        "points_today": points,
        "alarms_open": f.alarms,
    }


def _day_start_ms(timezone: str) -> int:
    now = datetime.now(ZoneInfo(timezone))
    return int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


@router.get("/{platform_id}/indicators")
async def platform_indicators(
    platform_id: int, db: Db, who: Caller, rt: RuntimeDep
) -> dict[str, Any]:
    """Counts rolled up the subtree (platforms by kind, enterprises counted once, products,
    devices, devices online, points timestamped today): total, own, and per direct child.

    `own` and each child also carry `home`: the same figures for enterprises at home there
    only. Home figures partition the subtree (see `qiantang.services.indicators`), so at the
    base the total equals `own.home` plus the children's `home` figures."""
    result = await run_in_threadpool(ind.platform_indicators, db, who, platform_id)
    day = _day_start_ms(rt.settings.timezone)
    return {
        "platform_id": result.platform_id,
        **(await _figures(result.total, rt, day)),
        "own": {
            **(await _figures(result.own, rt, day)),
            "home": await _figures(result.own_home, rt, day),
        },
        "children": [
            {
                "platform_id": p.id,
                "name": p.name,
                "kind": p.kind,
                **(await _figures(f, rt, day)),
                "home": await _figures(home, rt, day),
            }
            for p, f, home in result.children
        ],
    }
